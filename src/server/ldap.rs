//! Log in with the company directory (OpenLDAP, Active Directory) and keep directory
//! accounts in step with it (README "Identity", `[auth.ldap]`).
//!
//! - **Login** ([`login`]): a name that is not a local account with a password is checked
//!   against the directory: search-then-bind with the service account, or a direct bind.
//!   The first successful login creates the account (directory-backed, no local password);
//!   every login refreshes its groups. A local account with the same name is never taken
//!   over: the login is refused and audited, and an admin decides.
//! - **Groups**: by group search or `memberOf`, nested groups followed by zhiku (bounded,
//!   each group once) or by AD's in-chain rule, then mapped to zhiku groups by
//!   `group_rule`.
//! - **Sync** ([`sync`], every `sync_interval_secs` and `zhiku user sync-ldap`): accounts
//!   gone from the directory or disabled there are locked out (sessions and API tokens stop
//!   working at once); the others get their groups refreshed. A directory that cannot be
//!   reached changes nothing.
//!
//! Every value put into a filter is escaped (RFC 4515), every value put into a DN template
//! too (RFC 4514), and every LDAP operation has a time limit (`timeout_secs`).

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};
use zhiku_core::config::{LdapBind, LdapConfig, LdapGroupRule, LdapGroups, LdapNested};
use zhiku_core::store::meta::{MetaError, MetaStore, Role, UserId, valid_account_name};

/// The `source` of LDAP accounts in the metadata store.
pub const SOURCE: &str = "ldap";
/// The audit log's actor for what the periodic sync does.
pub const SYNC_ACTOR: &str = "ldap-sync";
/// LDAP result code for wrong credentials.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code for a base DN that does not exist.
const NO_SUCH_OBJECT: u32 = 32;
/// At most this many groups are collected for one user (a runaway nesting stops here).
const MAX_GROUPS: usize = 2000;
/// AD's LDAP_MATCHING_RULE_IN_CHAIN: `member` through any number of nested groups.
const IN_CHAIN_FILTER: &str = "(member:1.2.840.113556.1.4.1941:={dn})";

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("LDAP login is not configured: set auth.ldap.url (README \"Identity\")")]
    NotConfigured,
    #[error("cannot read the LDAP CA file {path} (auth.ldap.ca_file): {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("LDAP TLS setup: {0}")]
    Tls(String),
    #[error("cannot connect to the LDAP server {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the LDAP server {url} did not answer {op} within {secs} s (auth.ldap.timeout_secs)")]
    Timeout {
        url: String,
        op: &'static str,
        secs: u64,
    },
    #[error(
        "the LDAP service account `{dn}` cannot bind: {message} (check auth.ldap.bind_dn and ZHIKU_AUTH__LDAP__BIND_PASSWORD)"
    )]
    ServiceBind { dn: String, message: String },
    #[error("LDAP {op} failed: {message}")]
    Operation { op: &'static str, message: String },
    #[error(
        "the directory has none of the {checked} accounts to check: nobody was locked out, since this looks like a wrong auth.ldap.base_dn or user_filter rather than {checked} people leaving at once"
    )]
    NoneFound { checked: usize },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub type Result<T> = std::result::Result<T, LdapError>;

/// A user as the directory describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub dn: String,
    /// The value of `login_attribute`: the zhiku user name.
    pub login: String,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    /// The directory groups (names), nested ones included, sorted.
    pub directory_groups: Vec<String>,
    /// The zhiku groups they map to (`group_rule`), sorted.
    pub groups: Vec<String>,
}

/// Why the directory refused a login (for the audit log; the caller only ever hears
/// "wrong name or password").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuchUser,
    /// The user filter matched several entries: refused rather than guessed.
    Ambiguous(usize),
    WrongPassword,
    EmptyPassword,
    Disabled,
}

impl Refusal {
    pub fn describe(&self) -> String {
        match self {
            Refusal::NoSuchUser => "no such user in the directory".into(),
            Refusal::Ambiguous(n) => format!("the user filter matches {n} entries"),
            Refusal::WrongPassword => "wrong password".into(),
            Refusal::EmptyPassword => "empty password (never sent as an anonymous bind)".into(),
            Refusal::Disabled => "disabled in the directory".into(),
        }
    }
}

/// What the directory says about a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authn {
    Accepted(DirectoryUser),
    Refused(Refusal),
}

/// What the directory says about an existing account (sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Active(DirectoryUser),
    Disabled,
    Missing,
    Ambiguous(usize),
}

/// The configured directory.
pub struct Directory {
    cfg: LdapConfig,
    url: String,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// `template` with `{login}` and `{dn}` replaced by their RFC 4515-escaped values.
pub fn filter(template: &str, login: &str, dn: &str) -> String {
    template
        .replace("{login}", &ldap_escape(login))
        .replace("{dn}", &ldap_escape(dn))
}

/// A case-insensitive attribute of an entry (servers answer `memberof` for `memberOf`).
fn attr<'a>(entry: &'a SearchEntry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

fn first(entry: &SearchEntry, name: &str) -> Option<String> {
    attr(entry, name)
        .iter()
        .map(|v| v.trim())
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// The zhiku groups that directory groups `raw` map to under `cfg.group_rule`, sorted.
pub fn map_groups(cfg: &LdapConfig, raw: &[String]) -> Vec<String> {
    map_groups_by(cfg.group_rule, &cfg.allowed_groups, &cfg.group_map, raw)
}

/// The zhiku groups that a directory's or identity provider's groups `raw` map to under
/// `rule` (`[auth.ldap]` and `[auth.oidc]` share it), sorted.
pub fn map_groups_by(
    rule: LdapGroupRule,
    allowed: &[String],
    map: &std::collections::BTreeMap<String, String>,
    raw: &[String],
) -> Vec<String> {
    let mut out = BTreeSet::new();
    for g in raw {
        match rule {
            LdapGroupRule::All => {
                if valid_account_name(g) {
                    out.insert(g.clone());
                } else {
                    tracing::warn!(group = %g, "directory group skipped: not a valid zhiku group name (map it with group_rule = \"map\")");
                }
            }
            LdapGroupRule::AllowList => {
                if let Some(a) = allowed
                    .iter()
                    .find(|a| a.to_lowercase() == g.to_lowercase())
                {
                    out.insert(a.clone());
                }
            }
            LdapGroupRule::Map => {
                for (from, to) in map {
                    if from.to_lowercase() == g.to_lowercase() {
                        out.insert(to.clone());
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

fn root_store(cfg: &LdapConfig) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let bad = |message: String| LdapError::CaFile {
                path: path.clone(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(LdapError::Tls(
                    "no system root certificates found: install ca-certificates or set auth.ldap.ca_file".into(),
                ));
            }
        }
    }
    Ok(roots)
}

impl Directory {
    /// The directory of `cfg`, or [`LdapError::NotConfigured`].
    pub fn new(cfg: &LdapConfig) -> Result<Self> {
        if !cfg.enabled() {
            return Err(LdapError::NotConfigured);
        }
        let url = cfg.url.clone().unwrap_or_default().trim().to_string();
        let tls = if url.starts_with("ldaps://") || cfg.starttls {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| LdapError::Tls(e.to_string()))?
            .with_root_certificates(root_store(cfg)?)
            .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            url,
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            tls,
        })
    }

    /// `f` within the time limit, its error named after `op`.
    async fn op<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = ldap3::result::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => Err(LdapError::Timeout {
                url: self.url.clone(),
                op,
                secs: self.timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(LdapError::Operation {
                op,
                message: e.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn connect(&self) -> Result<Ldap> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let connecting = LdapConnAsync::with_settings(settings, &self.url);
        let (conn, ldap) = match tokio::time::timeout(self.timeout, connecting).await {
            Err(_) => {
                return Err(LdapError::Timeout {
                    url: self.url.clone(),
                    op: "the connection",
                    secs: self.timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                return Err(LdapError::Connect {
                    url: self.url.clone(),
                    message: e.to_string(),
                });
            }
            Ok(Ok(c)) => c,
        };
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// A connection bound as the service account (anonymous without `bind_dn`).
    async fn service(&self) -> Result<Ldap> {
        let mut ldap = self.connect().await?;
        if let Some(dn) = &self.cfg.bind_dn {
            let pw = zhiku_core::config::Secret::exposed(&self.cfg.bind_password).unwrap_or("");
            let r = self
                .op("the service bind", ldap.simple_bind(dn, pw))
                .await?;
            if r.rc != 0 || pw.is_empty() {
                return Err(LdapError::ServiceBind {
                    dn: dn.clone(),
                    message: if pw.is_empty() {
                        "its password is empty".into()
                    } else {
                        format!("result {} {}", r.rc, r.text)
                    },
                });
            }
        }
        Ok(ldap)
    }

    /// Bind as `dn` with `password` on a new connection: `Ok(Some(ldap))` when accepted,
    /// `Ok(None)` for wrong credentials.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<Option<Ldap>> {
        let mut ldap = self.connect().await?;
        let r = self
            .op("the user bind", ldap.simple_bind(dn, password))
            .await?;
        match r.rc {
            0 => Ok(Some(ldap)),
            INVALID_CREDENTIALS => {
                let _ = ldap.unbind().await;
                Ok(None)
            }
            rc => Err(LdapError::Operation {
                op: "the user bind",
                message: format!("result {rc} {}", r.text),
            }),
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>> {
        let r = self
            .op("a search", ldap.search(base, scope, filter, attrs.to_vec()))
            .await?;
        match r.1.rc {
            0 => Ok(r.0.into_iter().map(SearchEntry::construct).collect()),
            NO_SUCH_OBJECT => Ok(Vec::new()),
            rc => Err(LdapError::Operation {
                op: "a search",
                message: format!(
                    "result {rc} {} (base `{base}`, filter `{filter}`)",
                    r.1.text
                ),
            }),
        }
    }

    fn user_attrs(&self) -> Vec<&str> {
        let c = &self.cfg;
        let mut a = vec![
            c.login_attribute.as_str(),
            c.display_name_attribute.as_str(),
            c.mail_attribute.as_str(),
        ];
        if c.groups == LdapGroups::MemberOf {
            a.push(c.member_of_attribute.as_str());
        }
        a
    }

    /// The entries the user filter finds for `login`.
    async fn find_user(&self, ldap: &mut Ldap, login: &str) -> Result<Vec<SearchEntry>> {
        let f = filter(&self.cfg.user_filter, login, "");
        let attrs = self.user_attrs();
        self.search(ldap, &self.cfg.base_dn, Scope::Subtree, &f, &attrs)
            .await
    }

    async fn is_disabled(&self, ldap: &mut Ldap, dn: &str) -> Result<bool> {
        let Some(f) = &self.cfg.disabled_filter else {
            return Ok(false);
        };
        Ok(!self
            .search(ldap, dn, Scope::Base, f, &["1.1"])
            .await?
            .is_empty())
    }

    fn group_base(&self) -> &str {
        self.cfg
            .group_base_dn
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or(&self.cfg.base_dn)
    }

    /// The names of the directory groups of the user `entry`, nested ones included.
    async fn groups_of(
        &self,
        ldap: &mut Ldap,
        entry: &SearchEntry,
        login: &str,
    ) -> Result<Vec<String>> {
        let c = &self.cfg;
        let name_attr = c.group_name_attribute.as_str();
        let mut names = BTreeSet::new();
        if c.groups == LdapGroups::None {
            return Ok(Vec::new());
        }
        if c.nested == LdapNested::InChain {
            let f = filter(IN_CHAIN_FILTER, login, &entry.dn);
            for g in self
                .search(ldap, self.group_base(), Scope::Subtree, &f, &[name_attr])
                .await?
            {
                names.extend(first(&g, name_attr));
            }
            return Ok(names.into_iter().collect());
        }
        // Breadth first over group DNs; `seen` (case-insensitive DNs) makes cycles harmless.
        let mut seen: HashSet<String> = HashSet::new();
        let mut frontier: Vec<String> = Vec::new();
        match c.groups {
            LdapGroups::Search => {
                let f = filter(&c.group_filter, login, &entry.dn);
                for g in self
                    .search(ldap, self.group_base(), Scope::Subtree, &f, &[name_attr])
                    .await?
                {
                    if seen.insert(g.dn.to_lowercase()) {
                        names.extend(first(&g, name_attr));
                        frontier.push(g.dn);
                    }
                }
            }
            LdapGroups::MemberOf => {
                for dn in attr(entry, &c.member_of_attribute) {
                    if seen.insert(dn.to_lowercase()) {
                        frontier.push(dn.clone());
                    }
                }
                // The names of the direct groups.
                for dn in &frontier {
                    let found = self
                        .search(ldap, dn, Scope::Base, "(objectClass=*)", &[name_attr])
                        .await?;
                    names.extend(found.first().and_then(|g| first(g, name_attr)));
                }
            }
            LdapGroups::None => unreachable!("handled above"),
        }
        let depth = if c.nested == LdapNested::Recursive {
            c.nested_depth
        } else {
            0
        };
        for _ in 0..depth {
            if frontier.is_empty() || seen.len() >= MAX_GROUPS {
                break;
            }
            let mut next = Vec::new();
            for group_dn in &frontier {
                let parents: Vec<(String, Option<String>)> = match c.groups {
                    LdapGroups::Search => {
                        let f = filter(&c.nested_group_filter, "", group_dn);
                        self.search(ldap, self.group_base(), Scope::Subtree, &f, &[name_attr])
                            .await?
                            .into_iter()
                            .map(|g| {
                                let n = first(&g, name_attr);
                                (g.dn, n)
                            })
                            .collect()
                    }
                    _ => {
                        let found = self
                            .search(
                                ldap,
                                group_dn,
                                Scope::Base,
                                "(objectClass=*)",
                                &[c.member_of_attribute.as_str()],
                            )
                            .await?;
                        let mut out = Vec::new();
                        for dn in found
                            .first()
                            .map(|g| attr(g, &c.member_of_attribute).to_vec())
                            .unwrap_or_default()
                        {
                            let name = self
                                .search(ldap, &dn, Scope::Base, "(objectClass=*)", &[name_attr])
                                .await?
                                .first()
                                .and_then(|g| first(g, name_attr));
                            out.push((dn, name));
                        }
                        out
                    }
                };
                for (dn, name) in parents {
                    if seen.len() < MAX_GROUPS && seen.insert(dn.to_lowercase()) {
                        names.extend(name);
                        next.push(dn);
                    }
                }
            }
            frontier = next;
        }
        Ok(names.into_iter().collect())
    }

    /// The [`DirectoryUser`] of `entry`, its groups read on `ldap`.
    async fn describe(
        &self,
        ldap: &mut Ldap,
        entry: &SearchEntry,
        typed: &str,
    ) -> Result<DirectoryUser> {
        let login = first(entry, &self.cfg.login_attribute).unwrap_or_else(|| typed.to_string());
        let directory_groups = self.groups_of(ldap, entry, &login).await?;
        Ok(DirectoryUser {
            dn: entry.dn.clone(),
            groups: map_groups(&self.cfg, &directory_groups),
            directory_groups,
            display_name: first(entry, &self.cfg.display_name_attribute),
            mail: first(entry, &self.cfg.mail_attribute),
            login,
        })
    }

    /// Check `login` and `password` against the directory.
    pub async fn authenticate(&self, login: &str, password: &str) -> Result<Authn> {
        let login = login.trim();
        if password.is_empty() {
            // An LDAP simple bind with an empty password is an anonymous bind, which
            // servers accept: never let it count as a login.
            return Ok(Authn::Refused(Refusal::EmptyPassword));
        }
        if login.is_empty() {
            return Ok(Authn::Refused(Refusal::NoSuchUser));
        }
        let (mut ldap, entry) = match self.cfg.bind {
            LdapBind::Search => {
                let mut svc = self.service().await?;
                let mut found = self.find_user(&mut svc, login).await?;
                match found.len() {
                    0 => return Ok(Authn::Refused(Refusal::NoSuchUser)),
                    1 => {}
                    n => return Ok(Authn::Refused(Refusal::Ambiguous(n))),
                }
                let entry = found.remove(0);
                match self.bind_as(&entry.dn, password).await? {
                    Some(mut user) => {
                        let _ = user.unbind().await;
                    }
                    None => return Ok(Authn::Refused(Refusal::WrongPassword)),
                }
                (svc, entry)
            }
            LdapBind::Direct => {
                let template = self.cfg.user_dn_template.as_deref().unwrap_or_default();
                let dn = template.replace("{login}", &dn_escape(login));
                let Some(mut user) = self.bind_as(&dn, password).await? else {
                    return Ok(Authn::Refused(Refusal::WrongPassword));
                };
                let mut found = self.find_user(&mut user, login).await?;
                match found.len() {
                    0 => return Ok(Authn::Refused(Refusal::NoSuchUser)),
                    1 => {}
                    n => return Ok(Authn::Refused(Refusal::Ambiguous(n))),
                }
                // Groups and the disabled rule are read as the service account when there
                // is one (users may not see group entries), else as the user.
                let reader = match &self.cfg.bind_dn {
                    Some(_) => {
                        let _ = user.unbind().await;
                        self.service().await?
                    }
                    None => user,
                };
                (reader, found.remove(0))
            }
        };
        if self.is_disabled(&mut ldap, &entry.dn).await? {
            return Ok(Authn::Refused(Refusal::Disabled));
        }
        let user = self.describe(&mut ldap, &entry, login).await?;
        let _ = ldap.unbind().await;
        Ok(Authn::Accepted(user))
    }

    /// What the directory says now about the account `name`, on a service connection.
    async fn lookup_on(&self, ldap: &mut Ldap, name: &str) -> Result<Lookup> {
        let mut found = self.find_user(ldap, name).await?;
        match found.len() {
            0 => return Ok(Lookup::Missing),
            1 => {}
            n => return Ok(Lookup::Ambiguous(n)),
        }
        let entry = found.remove(0);
        if self.is_disabled(ldap, &entry.dn).await? {
            return Ok(Lookup::Disabled);
        }
        Ok(Lookup::Active(self.describe(ldap, &entry, name).await?))
    }

    /// What the directory says now about the account `name` (a new service connection).
    pub async fn lookup(&self, name: &str) -> Result<Lookup> {
        let mut ldap = self.service().await?;
        let found = self.lookup_on(&mut ldap, name).await;
        let _ = ldap.unbind().await;
        found
    }
}

/// Why a directory login could not become a zhiku session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provision {
    /// The account (created now when `created`).
    Ready { user: UserId, created: bool },
    /// A local account (or one from another directory or provider) has this name: not
    /// taken over.
    LocalConflict,
    /// The account of this name belongs to another subject of the same provider (its
    /// `sub` differs): not taken over.
    OtherSubject,
    /// The directory's login value cannot be a zhiku user name.
    BadName,
}

/// Make the directory user `u` a zhiku account: created on the first login, re-enabled and
/// its groups refreshed on every login. Audited as `actor`.
pub fn provision(meta: &MetaStore, u: &DirectoryUser, actor: &str) -> Result<Provision> {
    provision_from(meta, SOURCE, false, u, actor)
}

/// [`provision`] for the accounts of `source` (`ldap`, `oidc:<name>`); the audit actions
/// are named after the part before `:`. With `pin_subject`, an existing account must have
/// the same `u.dn` (an OIDC `sub`, which never changes, unlike an LDAP DN).
pub fn provision_from(
    meta: &MetaStore,
    source: &str,
    pin_subject: bool,
    u: &DirectoryUser,
    actor: &str,
) -> Result<Provision> {
    if !valid_account_name(&u.login) {
        return Ok(Provision::BadName);
    }
    let kind = source.split(':').next().unwrap_or(source);
    let (user, created, was_disabled) = match meta.user_by_name(&u.login)? {
        Some(existing) => match meta.directory_account(existing.id)? {
            Some(a) if a.source == source => {
                if pin_subject && a.dn != u.dn {
                    return Ok(Provision::OtherSubject);
                }
                (existing.id, false, a.disabled_at.is_some())
            }
            _ => return Ok(Provision::LocalConflict),
        },
        None => (meta.create_user(&u.login, None, Role::Member)?, true, false),
    };
    meta.upsert_directory_account(
        user,
        source,
        &u.dn,
        u.display_name.as_deref(),
        u.mail.as_deref(),
    )?;
    let changes = meta.set_directory_groups(user, &u.groups)?;
    if created {
        meta.audit(
            actor,
            &format!("{kind}.account_create"),
            &u.login,
            &format!(
                "{} {}; groups {}",
                if pin_subject { "sub" } else { "dn" },
                u.dn,
                u.groups.join(",")
            ),
            None,
        )?;
    }
    if was_disabled {
        meta.audit(
            actor,
            &format!("{kind}.account_enable"),
            &u.login,
            "active in the directory again (its revoked API tokens stay revoked)",
            None,
        )?;
    }
    if !changes.is_empty() && !created {
        meta.audit(
            actor,
            &format!("{kind}.groups"),
            &u.login,
            &describe_changes(&changes),
            None,
        )?;
    }
    Ok(Provision::Ready { user, created })
}

fn describe_changes(c: &zhiku_core::store::meta::GroupChanges) -> String {
    let mut parts = Vec::new();
    if !c.added.is_empty() {
        parts.push(format!("added {}", c.added.join(",")));
    }
    if !c.removed.is_empty() {
        parts.push(format!("removed {}", c.removed.join(",")));
    }
    parts.join("; ")
}

/// A directory login attempt from the login form: `Ok(Some(user))` when it may have a
/// session, `Ok(None)` when refused (audited with the reason), `Err` when the directory
/// cannot be asked.
pub async fn login(
    meta: &MetaStore,
    cfg: &LdapConfig,
    name: &str,
    password: &str,
    ip: Option<&str>,
) -> Result<Option<UserId>> {
    let dir = Directory::new(cfg)?;
    let typed: String = name.trim().chars().take(64).collect();
    let refuse = |reason: &str| -> Result<Option<UserId>> {
        tracing::info!(name = %typed, reason, "LDAP login refused");
        meta.audit(&typed, "ldap.login_refused", &typed, reason, ip)?;
        Ok(None)
    };
    let user = match dir.authenticate(name, password).await? {
        Authn::Accepted(u) => u,
        Authn::Refused(r) => return refuse(&r.describe()),
    };
    match provision(meta, &user, &user.login)? {
        Provision::Ready { user: id, .. } => {
            meta.audit(
                &user.login,
                "ldap.login",
                &user.login,
                &format!("groups {}", user.groups.join(",")),
                ip,
            )?;
            Ok(Some(id))
        }
        Provision::LocalConflict => refuse(&format!(
            "a local account `{}` exists and is not a directory account; it is not taken over (rename or delete it to let the directory user in)",
            user.login
        )),
        Provision::BadName => refuse(&format!(
            "the directory's {} `{}` is not a valid zhiku user name",
            cfg.login_attribute, user.login
        )),
        Provision::OtherSubject => refuse("the account belongs to another directory entry"),
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Directory accounts checked.
    pub checked: usize,
    /// Accounts locked out now, with the reason.
    pub disabled: Vec<(String, String)>,
    /// Accounts whose groups changed, with the change.
    pub regrouped: Vec<(String, String)>,
    /// Accounts left as they were because the directory's answer was unclear.
    pub skipped: Vec<(String, String)>,
}

/// Check every active directory account against the directory: lock out the ones gone or
/// disabled there, refresh the groups of the others. Stops at the first LDAP error (what
/// it had done stays done; nothing is concluded from an unanswered question).
pub async fn sync(meta: &MetaStore, cfg: &LdapConfig) -> Result<SyncReport> {
    let dir = Directory::new(cfg)?;
    let mut ldap = dir.service().await?;
    let mut report = SyncReport::default();
    // Ask about everyone first, then act: a directory that suddenly knows no one is a
    // configuration error, not a mass departure.
    let mut found = Vec::new();
    for account in meta.directory_accounts(SOURCE)? {
        if account.disabled_at.is_none() {
            let lookup = dir.lookup_on(&mut ldap, &account.name).await?;
            found.push((account, lookup));
        }
    }
    let _ = ldap.unbind().await;
    if found.len() >= 2 && found.iter().all(|(_, l)| *l == Lookup::Missing) {
        return Err(LdapError::NoneFound {
            checked: found.len(),
        });
    }
    for (account, lookup) in found {
        report.checked += 1;
        let reason = match lookup {
            Lookup::Active(u) if u.login == account.name => {
                meta.upsert_directory_account(
                    account.user_id,
                    SOURCE,
                    &u.dn,
                    u.display_name.as_deref(),
                    u.mail.as_deref(),
                )?;
                let changes = meta.set_directory_groups(account.user_id, &u.groups)?;
                if !changes.is_empty() {
                    let d = describe_changes(&changes);
                    meta.audit(SYNC_ACTOR, "ldap.groups", &account.name, &d, None)?;
                    report.regrouped.push((account.name.clone(), d));
                }
                continue;
            }
            Lookup::Active(u) => {
                let why = format!("the directory now names it `{}`", u.login);
                report.skipped.push((account.name.clone(), why));
                continue;
            }
            Lookup::Ambiguous(n) => {
                let why = format!("the user filter matches {n} entries");
                report.skipped.push((account.name.clone(), why));
                continue;
            }
            Lookup::Missing => "gone from the directory",
            Lookup::Disabled => "disabled in the directory",
        };
        if meta.disable_directory_account(account.user_id)? {
            meta.audit(SYNC_ACTOR, "ldap.disable", &account.name, reason, None)?;
            tracing::info!(user = %account.name, reason, "directory account locked out");
            report
                .disabled
                .push((account.name.clone(), reason.to_string()));
        }
    }
    if report.disabled.is_empty() && report.regrouped.is_empty() && report.skipped.is_empty() {
        // A sync that changed nothing leaves no trace in the audit log (it runs every
        // `sync_interval_secs`).
        return Ok(report);
    }
    meta.audit(
        SYNC_ACTOR,
        "ldap.sync",
        "",
        &format!(
            "checked {}, locked out {}, groups changed {}, skipped {}",
            report.checked,
            report.disabled.len(),
            report.regrouped.len(),
            report.skipped.len()
        ),
        None,
    )?;
    Ok(report)
}

/// Run [`sync`] every `sync_interval_secs` (the first right away) while the server runs.
pub fn start_sync(state: &crate::AppState) {
    let cfg = state.engine.config.auth.ldap.clone();
    if !cfg.enabled() || cfg.sync_interval_secs == 0 {
        return;
    }
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(cfg.sync_interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sync(&engine.meta, &cfg).await {
                Ok(r) => tracing::info!(
                    checked = r.checked,
                    locked_out = r.disabled.len(),
                    regrouped = r.regrouped.len(),
                    "LDAP sync done"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "LDAP sync failed; nothing concluded from it")
                }
            }
        }
    });
}

/// The client's address, where the server knows it (for the audit log).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        let f = filter(
            "(&(objectClass=inetOrgPerson)(uid={login}))",
            "*)(uid=*",
            "",
        );
        assert_eq!(f, r"(&(objectClass=inetOrgPerson)(uid=\2a\29\28uid=\2a))");
        let f = filter("(member={dn})", "", r"cn=a\,b (x),ou=g");
        assert_eq!(f, r"(member=cn=a\5c,b \28x\29,ou=g)");
        assert_eq!(filter("(uid={login})", "a\0b\\", ""), r"(uid=a\00b\5c)");
        assert_eq!(
            filter(IN_CHAIN_FILTER, "", "CN=Ann,OU=People,DC=corp"),
            "(member:1.2.840.113556.1.4.1941:=CN=Ann,OU=People,DC=corp)"
        );
        // DN templates escape DN specials (RFC 4514 hex pairs).
        assert_eq!(dn_escape("a,b+c"), r"a\2cb\2bc");
        assert_eq!(dn_escape("ann"), "ann");
    }

    #[test]
    fn groups_map_by_rule() {
        let raw: Vec<String> = ["staff", "Domain Users", "Ops"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut cfg = LdapConfig::default();
        assert_eq!(map_groups(&cfg, &raw), vec!["Ops", "staff"]);
        cfg.group_rule = LdapGroupRule::AllowList;
        cfg.allowed_groups = vec!["ops".into(), "finance".into()];
        assert_eq!(map_groups(&cfg, &raw), vec!["ops"]);
        cfg.group_rule = LdapGroupRule::Map;
        cfg.group_map = [("domain users", "everyone"), ("OPS", "it")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(map_groups(&cfg, &raw), vec!["everyone", "it"]);
    }

    #[test]
    fn an_unconfigured_or_broken_setup_says_what_to_fix() {
        let e = Directory::new(&LdapConfig::default()).err().unwrap();
        assert!(e.to_string().contains("auth.ldap.url"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = LdapConfig {
            url: Some("ldaps://127.0.0.1:1".into()),
            base_dn: "dc=x".into(),
            ca_file: Some(dir.path().join("missing.pem")),
            ..LdapConfig::default()
        };
        let e = Directory::new(&cfg).err().unwrap().to_string();
        assert!(e.contains("missing.pem") && e.contains("ca_file"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let cfg = LdapConfig {
            ca_file: Some(dir.path().join("empty.pem")),
            ..cfg
        };
        let e = Directory::new(&cfg).err().unwrap().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_within_the_timeout() {
        // A port nobody listens on: connection refused, reported with the URL.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = LdapConfig {
            url: Some(format!("ldap://127.0.0.1:{port}")),
            base_dn: "dc=x".into(),
            timeout_secs: 2,
            ..LdapConfig::default()
        };
        let started = std::time::Instant::now();
        let e = Directory::new(&cfg)
            .unwrap()
            .authenticate("alice", "pw")
            .await
            .unwrap_err();
        assert!(matches!(e, LdapError::Connect { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // A server that accepts but never answers: the operation times out.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = LdapConfig {
            url: Some(format!("ldap://{}", silent.local_addr().unwrap())),
            timeout_secs: 1,
            ..cfg
        };
        let hold = tokio::spawn(async move {
            let (_s, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let e = Directory::new(&cfg)
            .unwrap()
            .lookup("alice")
            .await
            .unwrap_err();
        assert!(matches!(e, LdapError::Timeout { .. }), "{e}");
        hold.abort();
    }
}
