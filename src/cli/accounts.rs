//! `zhiku user`, `zhiku group` and `zhiku token`: accounts and their API tokens.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use zhiku_core::access;
use zhiku_core::engine::Engine;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        name: String,
        #[arg(long, env = "ZHIKU_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "member")]
        role: zhiku_core::store::meta::Role,
        /// Groups to join (created when missing).
        #[arg(long)]
        group: Vec<String>,
        /// The user's WeCom userid: their WeCom questions are answered as this user.
        #[arg(long)]
        wecom: Option<String>,
    },
    /// List users with their role and groups.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (their sessions end).
    Passwd {
        name: String,
        #[arg(long, env = "ZHIKU_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Add a user to groups (created when missing).
    Join { name: String, groups: Vec<String> },
    /// Link a user to their WeCom userid (their WeCom questions are answered as this user);
    /// without ID, unlink.
    Wecom { name: String, id: Option<String> },
    /// Delete a user with their sessions and tokens.
    Delete { name: String },
    /// Check every LDAP account against the directory now (`[auth.ldap]`): lock out those
    /// gone or disabled there (sessions and API tokens stop working), refresh the others'
    /// groups. The server also does this every `auth.ldap.sync_interval_secs`.
    SyncLdap,
    /// Show what the directory says about a login name: entry, groups, zhiku groups.
    LdapLookup { name: String },
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Add a group.
    Add { name: String },
    /// List groups with their member counts and knowledge bases.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a group (its members stay).
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for a user and print it (only this once).
    Create {
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

pub fn user(engine: &Engine, action: UserCommand) -> anyhow::Result<ExitCode> {
    let m = &engine.meta;
    match action {
        UserCommand::Add {
            name,
            password,
            role,
            group,
            wecom,
        } => {
            if let Some(w) = &wecom {
                m.check_wecom_userid(w)?;
            }
            let id = m.create_user(&name, Some(&access::hash_password(&password)?), role)?;
            for g in &group {
                m.add_to_group(id, m.ensure_group(g)?)?;
            }
            if let Some(w) = &wecom {
                link_wecom(m, id, &name, Some(w))?;
            }
            m.audit(
                "cli",
                "user.create",
                &name,
                &format!("role {}", role.as_str()),
                None,
            )?;
            println!("added {} {name}", role.as_str());
        }
        UserCommand::List { json } => {
            let users = m.list_users()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            }
            for u in users.iter().filter(|_| !json) {
                println!("{}\t{}\t{}", u.name, u.role.as_str(), u.groups.join(","));
            }
        }
        UserCommand::Passwd { name, password } => {
            let u = m.require_user(&name)?;
            if let Some(d) = &u.directory {
                bail!("{name} is a {d} account: its password is the directory's");
            }
            m.set_password(u.id, &access::hash_password(&password)?)?;
            m.audit("cli", "user.update", &name, "password", None)?;
            println!("password of {name} changed");
        }
        UserCommand::Join { name, groups } => {
            let id = m.require_user(&name)?.id;
            for g in &groups {
                m.add_to_group(id, m.ensure_group(g)?)?;
            }
            println!("{name} is in {}", m.require_user(&name)?.groups.join(", "));
        }
        UserCommand::Wecom { name, id } => {
            let user = m.require_user(&name)?.id;
            link_wecom(m, user, &name, id.as_deref())?;
            match id {
                Some(id) => println!("{name} answers as WeCom user {id}"),
                None => println!("{name} is no longer linked to a WeCom user"),
            }
        }
        UserCommand::Delete { name } => {
            let u = m.require_user(&name)?;
            m.delete_user(u.id)?;
            m.audit("cli", "user.delete", &name, "", None)?;
            println!("deleted user {name}");
        }
        UserCommand::SyncLdap => {
            let r = runtime()?.block_on(zhiku_server::ldap::sync(m, &engine.config.auth.ldap))?;
            for (name, why) in &r.disabled {
                println!("locked out {name}: {why}");
            }
            for (name, change) in &r.regrouped {
                println!("groups of {name}: {change}");
            }
            for (name, why) in &r.skipped {
                println!("left {name} as it is: {why}");
            }
            println!(
                "checked {} LDAP accounts: {} locked out, {} with new groups",
                r.checked,
                r.disabled.len(),
                r.regrouped.len()
            );
        }
        UserCommand::LdapLookup { name } => {
            use zhiku_server::ldap::{Directory, Lookup};
            let dir = Directory::new(&engine.config.auth.ldap)?;
            match runtime()?.block_on(dir.lookup(&name))? {
                Lookup::Active(u) => {
                    println!("dn\t{}\nlogin\t{}", u.dn, u.login);
                    println!("display name\t{}", u.display_name.unwrap_or_default());
                    println!("mail\t{}", u.mail.unwrap_or_default());
                    println!("directory groups\t{}", u.directory_groups.join(", "));
                    println!("zhiku groups\t{}", u.groups.join(", "));
                }
                Lookup::Disabled => bail!("{name} is disabled in the directory"),
                Lookup::Missing => bail!("the directory has no {name} (auth.ldap.user_filter)"),
                Lookup::Ambiguous(n) => {
                    bail!("the user filter matches {n} entries for {name}; make it unique")
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn group(engine: &Engine, action: GroupCommand) -> anyhow::Result<ExitCode> {
    let m = &engine.meta;
    match action {
        GroupCommand::Add { name } => {
            m.create_group(&name)?;
            m.audit("cli", "group.create", &name, "", None)?;
            println!("added group {name}");
        }
        GroupCommand::List { json } => {
            let groups = m.list_groups()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&groups)?);
            }
            for g in groups.iter().filter(|_| !json) {
                println!(
                    "{}\t{} members\t{}",
                    g.name,
                    g.members,
                    g.knowledge_bases.join(",")
                );
            }
        }
        GroupCommand::Delete { name } => {
            m.delete_group(m.require_group(&name)?)?;
            m.audit("cli", "group.delete", &name, "", None)?;
            println!("deleted group {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token(engine: &Engine, action: TokenCommand) -> anyhow::Result<ExitCode> {
    let m = &engine.meta;
    match action {
        TokenCommand::Create { user, name } => {
            let (id, token) = access::create_token(m, m.require_user(&user)?.id, &name)?;
            m.audit(
                "cli",
                "token.create",
                &id.to_string(),
                &format!("for {user}: {name}"),
                None,
            )?;
            eprintln!("token {id} for {user} (shown only now; store it safely):");
            println!("{token}");
        }
        TokenCommand::List => {
            for t in m.list_tokens(None)? {
                println!(
                    "{}\t{}\t{}\t{}…\t{}",
                    t.id,
                    t.user,
                    t.name,
                    t.prefix,
                    if t.revoked { "revoked" } else { "active" }
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if !m.revoke_token(id)? {
                bail!("no active token {id} (see `zhiku token list`)");
            }
            m.audit("cli", "token.revoke", &id.to_string(), "", None)?;
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Link `user` (`name`) to a WeCom userid, or unlink it (the rules are
/// [`zhiku_core::store::meta::MetaStore::link_wecom_user`]'s, shared with the admin API).
fn link_wecom(
    m: &zhiku_core::store::meta::MetaStore,
    user: i64,
    name: &str,
    wecom: Option<&str>,
) -> anyhow::Result<()> {
    m.link_wecom_user(user, wecom)?;
    m.audit(
        "cli",
        "user.update",
        name,
        &format!("wecom {}", wecom.unwrap_or("(none)")),
        None,
    )?;
    Ok(())
}
