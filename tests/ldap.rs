//! LDAP login and sync against a real OpenLDAP: each test starts Debian's `slapd` itself on
//! 127.0.0.1 (a generated slapd.conf, mdb backend in a temp folder, no system service),
//! loads a small directory with `ldapadd`, and drives zhiku's HTTP API and CLI.
//!
//! The directory: people ann (in staff and platform; platform is in engineering, and
//! loop-a/loop-b contain each other), ben (staff), cara (disabled), dan, erin (also a
//! passwordless local account), root (also the local admin, with another password).
//! Without slapd the tests say so and pass, except under `CI`, where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use zhiku_core::config::{Config, LdapGroups};
use zhiku_core::engine::Engine;
use zhiku_core::store::meta::Role;

use common::HashEmbedder;
use common::http::{Client, TestServer};

const SUFFIX: &str = "dc=example,dc=com";
const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
const ROOT_PW: &str = "admin-secret-1";

/// The slapd binary, or None (said, and only outside CI) when it is not installed.
fn slapd_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/slapd", "/usr/local/sbin/slapd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let tools = ["ldapadd", "ldapmodify", "ldapdelete"]
        .iter()
        .all(|t| Command::new(t).arg("-VV").output().is_ok());
    match found {
        Some(p) if tools => Some(p),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "slapd or ldap-utils missing: CI must install them (.ci/run: apt-get install slapd ldap-utils)"
            )
        }
        _ => {
            eprintln!(
                "skipped: install slapd and ldap-utils (apt-get install slapd ldap-utils) to test LDAP login against a real OpenLDAP"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).
fn make_certs(dir: &Path) -> Option<()> {
    if Command::new("openssl").arg("version").output().is_err() {
        if std::env::var_os("CI").is_some() {
            panic!("openssl missing: CI must install it (.ci/run)");
        }
        eprintln!("skipped the TLS part: no openssl CLI");
        return None;
    }
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=zhiku test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .current_dir(dir));
    run(Command::new("openssl")
        .arg("req")
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=127.0.0.1"])
        .current_dir(dir));
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
        .args(["-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem"])
        .args(["-days", "2", "-extfile", "ext.cnf"])
        .current_dir(dir));
    Some(())
}

/// A running slapd; killed when dropped.
struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    /// `ldaps://` URL and CA file when TLS is set up.
    tls: Option<(String, PathBuf)>,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PEOPLE: &[(&str, &str, &str)] = &[
    ("ann", "Ann Lee", "ann-pass-1"),
    ("ben", "Ben Wu", "ben-pass-1"),
    ("cara", "Cara Ma", "cara-pass-1"),
    ("dan", "Dan Xu", "dan-pass-1"),
    ("erin", "Erin Li", "erin-pass-1"),
    ("root", "Directory Root", "dir-root-pass"),
];

fn person(uid: &str) -> String {
    format!("uid={uid},ou=people,{SUFFIX}")
}

fn group(cn: &str) -> String {
    format!("cn={cn},ou=groups,{SUFFIX}")
}

fn directory_ldif() -> String {
    let mut l = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for (uid, cn, pw) in PEOPLE {
        let sn = cn.rsplit(' ').next().unwrap();
        l.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {sn}\n\
             mail: {uid}@example.com\nuserPassword: {pw}\n",
            person(uid)
        ));
        if *uid == "cara" {
            l.push_str("employeeType: disabled\n");
        }
        l.push('\n');
    }
    // Groups after people (the memberof overlay needs the members to exist); loop-b is
    // added empty and then given loop-a, so that the two contain each other.
    let groups: &[(&str, &[String])] = &[
        ("staff", &[person("ann"), person("ben"), person("dan")]),
        ("platform", &[person("ann")]),
        ("engineering", &[group("platform")]),
        ("loop-b", &[person("root")]),
        ("loop-a", &[person("ann"), group("loop-b")]),
    ];
    for (cn, members) in groups {
        l.push_str(&format!(
            "dn: {}\nobjectClass: groupOfNames\ncn: {cn}\n",
            group(cn)
        ));
        for m in *members {
            l.push_str(&format!("member: {m}\n"));
        }
        l.push('\n');
    }
    l
}

impl Slapd {
    fn start(binary: &Path) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        let tls = make_certs(d).is_some();
        let mut conf = String::new();
        for s in ["core", "cosine", "nis", "inetorgperson"] {
            conf.push_str(&format!("include /etc/ldap/schema/{s}.schema\n"));
        }
        conf.push_str(&format!(
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
             pidfile {0}/slapd.pid\nargsfile {0}/slapd.args\n",
            d.display()
        ));
        if tls {
            conf.push_str(&format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\n\
                 TLSCertificateKeyFile {0}/server.key\n",
                d.display()
            ));
        }
        conf.push_str(&format!(
            "database mdb\nmaxsize 104857600\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\n\
             rootpw {ROOT_PW}\ndirectory {}/db\noverlay memberof\n\
             access to attrs=userPassword by self read by anonymous auth by * none\n\
             access to * by * read\n",
            d.display()
        ));
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let mut listen = format!("{url}/");
        let tls = tls.then(|| {
            let p = free_port();
            listen.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
            (format!("ldaps://127.0.0.1:{p}"), d.join("ca.pem"))
        });
        let child = Command::new(binary)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .args(["-h", &listen, "-d", "0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
            .spawn()
            .expect("start slapd");
        let mut s = Slapd {
            child,
            dir,
            url,
            tls,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "slapd exited ({status}): {}",
                    std::fs::read_to_string(s.dir.path().join("slapd.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "slapd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        s.ldif("ldapadd", &directory_ldif());
        s.ldif(
            "ldapmodify",
            &format!(
                "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n",
                group("loop-b"),
                group("loop-a")
            ),
        );
        s
    }

    /// Apply LDIF with `tool` (ldapadd, ldapmodify) as the directory's root.
    fn ldif(&self, tool: &str, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        run(Command::new(tool)
            .args(["-x", "-H", &self.url, "-D", ROOT_DN, "-w", ROOT_PW, "-f"])
            .arg(&path));
    }

    fn delete(&self, dn: &str) {
        run(Command::new("ldapdelete")
            .args(["-x", "-H", &self.url, "-D", ROOT_DN, "-w", ROOT_PW, dn]));
    }

    /// zhiku's `[auth.ldap]` for this directory, as environment variables (the way an
    /// operator would pass the service password).
    fn env(&self) -> Vec<(String, String)> {
        [
            ("ZHIKU_AUTH__LDAP__URL", self.url.as_str()),
            ("ZHIKU_AUTH__LDAP__BIND_DN", ROOT_DN),
            ("ZHIKU_AUTH__LDAP__BIND_PASSWORD", ROOT_PW),
            ("ZHIKU_AUTH__LDAP__BASE_DN", &format!("ou=people,{SUFFIX}")),
            (
                "ZHIKU_AUTH__LDAP__GROUP_BASE_DN",
                &format!("ou=groups,{SUFFIX}"),
            ),
            (
                "ZHIKU_AUTH__LDAP__DISABLED_FILTER",
                "(employeeType=disabled)",
            ),
            ("ZHIKU_AUTH__LDAP__SYNC_INTERVAL_SECS", "0"),
            ("ZHIKU_AUTH__LDAP__TIMEOUT_SECS", "5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn config(&self, data: &Path) -> Config {
        let mut c = Config::load_with_env(None, &self.env()).expect("LDAP config from env");
        c.data_dir = data.to_path_buf();
        c.ingest.worker_binary = Some(env!("CARGO_BIN_EXE_zhiku").into());
        c
    }
}

/// zhiku with knowledge base `hr` read by group `staff`, the local admin root and the
/// passwordless local account erin (as WeCom provisions them).
fn zhiku(config: Config) -> Engine {
    let e = Engine::open(config)
        .unwrap()
        .with_embedder(HashEmbedder::new());
    let opts = zhiku_core::index::IngestOptions::default();
    let file = common::samples().join("员工手册-休假制度.txt");
    zhiku_core::index::ingest_paths(&e, "hr", &[file], &opts, &zhiku_core::progress::Silent)
        .unwrap();
    let staff = e.meta.create_group("staff").unwrap();
    e.meta
        .grant(e.meta.require_kb("hr").unwrap(), staff)
        .unwrap();
    let hash = zhiku_core::access::hash_password("local-root-pass").unwrap();
    e.meta
        .create_user("root", Some(&hash), Role::Admin)
        .unwrap();
    e.meta.create_user("erin", None, Role::Member).unwrap();
    e
}

fn login_status(c: &Client, name: &str, password: &str) -> u16 {
    c.post_json("/api/login", &json!({"name": name, "password": password}))
        .status
}

fn groups(me: &serde_json::Value) -> Vec<String> {
    me["user"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect()
}

fn audit(e: &Engine, action: &str, target: &str) -> Vec<String> {
    e.meta
        .audit_log(500, 0)
        .unwrap()
        .into_iter()
        .filter(|a| a.action == action && a.target == target)
        .map(|a| a.detail)
        .collect()
}

fn sync(e: &Engine) -> zhiku_server::ldap::SyncReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(zhiku_server::ldap::sync(&e.meta, &e.config.auth.ldap))
        .expect("LDAP sync")
}

#[test]
fn ldap_login_groups_refusals_and_sync_lock_out() {
    let Some(slapd_bin) = slapd_binary() else {
        return;
    };
    let ldap = Slapd::start(&slapd_bin);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = TestServer::start(zhiku(ldap.config(&data)), None);
    let e = &s.state.engine;
    let anon = s.client();

    // First login creates the account, with its groups, nested ones and a cycle included.
    let ann = anon.login("ann", "ann-pass-1");
    let me = ann.get("/api/me").json();
    assert_eq!(me["user"]["name"], "ann");
    assert_eq!(me["user"]["directory"], "ldap");
    assert_eq!(
        groups(&me),
        ["engineering", "loop-a", "loop-b", "platform", "staff"]
    );
    assert_eq!(me["knowledge_bases"], json!(["hr"]));
    let created = audit(e, "ldap.account_create", "ann");
    assert!(created[0].contains(&person("ann")), "{created:?}");
    assert_eq!(audit(e, "ldap.login", "ann").len(), 1);
    // Case as typed does not make a second account: the directory's uid names it.
    let again = anon.login("ANN", "ann-pass-1");
    assert_eq!(again.get("/api/me").json()["user"]["name"], "ann");

    // Refusals, all as "wrong name or password", each audited with its reason.
    assert_eq!(login_status(&anon, "ann", "wrong-pass-1"), 401);
    assert_eq!(login_status(&anon, "ann", ""), 401, "no anonymous bind");
    for injected in ["*", "*)(uid=*", "ann)(|(uid=*", "*)(objectClass=*"] {
        assert_eq!(
            login_status(&anon, injected, "ann-pass-1"),
            401,
            "{injected}"
        );
        let why = audit(e, "ldap.login_refused", injected);
        assert_eq!(why, ["no such user in the directory"], "{injected}");
    }
    assert_eq!(login_status(&anon, "cara", "cara-pass-1"), 401);
    assert_eq!(
        audit(e, "ldap.login_refused", "cara"),
        ["disabled in the directory"]
    );
    assert!(e.meta.user_by_name("cara").unwrap().is_none());
    assert_eq!(login_status(&anon, "nobody", "ann-pass-1"), 401);
    // A local account of the same name is not taken over.
    assert_eq!(login_status(&anon, "erin", "erin-pass-1"), 401);
    assert!(audit(e, "ldap.login_refused", "erin")[0].contains("not taken over"));
    assert!(e.meta.require_user("erin").unwrap().directory.is_none());
    // The local admin logs in with the local password; the directory's root password is
    // never tried for a local account.
    let root = anon.login("root", "local-root-pass");
    assert_eq!(root.get("/api/me").json()["user"]["role"], "admin");
    assert_eq!(login_status(&anon, "root", "dir-root-pass"), 401);
    // A directory account gets no local password.
    let r = root.send_json(
        "PATCH",
        "/api/users/ann",
        &json!({"password": "local-pass-1"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());

    // ben and dan log in; dan makes an API token.
    let ben = anon.login("ben", "ben-pass-1");
    let dan = anon.login("dan", "dan-pass-1");
    let token = dan
        .post_json("/api/tokens", &json!({"name": "script"}))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let dan_token = anon.clone().bearer(&token);
    assert_eq!(dan_token.get("/api/me").status, 200);
    // An admin adds ann to a group by hand: the directory never takes it away.
    let r = root.send_json("PATCH", "/api/users/ann", &json!({"groups": groups(&me).into_iter().chain(["auditors".to_string()]).collect::<Vec<_>>()}));
    assert_eq!(r.status, 200, "{}", r.text());

    // The directory changes: dan leaves, ben is disabled, ann leaves staff.
    ldap.delete(&person("dan"));
    ldap.ldif(
        "ldapmodify",
        &format!(
            "dn: {}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n\
             dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n",
            person("ben"),
            group("staff"),
            person("ann")
        ),
    );
    // Until the sync, their sessions still work.
    assert_eq!(dan.get("/api/me").status, 200);
    let report = sync(e);
    assert_eq!(report.checked, 3, "{report:?}");
    let mut locked: Vec<&str> = report.disabled.iter().map(|(n, _)| n.as_str()).collect();
    locked.sort();
    assert_eq!(locked, ["ben", "dan"], "{report:?}");
    // Their session cookies and the API token stop working at once.
    assert_eq!(dan.get("/api/me").status, 401);
    assert_eq!(dan_token.get("/api/me").status, 401);
    assert_eq!(ben.get("/api/me").status, 401);
    assert_eq!(login_status(&anon, "dan", "dan-pass-1"), 401);
    assert_eq!(login_status(&anon, "ben", "ben-pass-1"), 401);
    assert_eq!(audit(e, "ldap.disable", "dan"), ["gone from the directory"]);
    assert_eq!(
        audit(e, "ldap.disable", "ben"),
        ["disabled in the directory"]
    );
    // ann's groups follow the directory (her session stays), the hand-given one stays.
    let me = ann.get("/api/me").json();
    assert_eq!(
        groups(&me),
        ["auditors", "engineering", "loop-a", "loop-b", "platform"]
    );
    assert_eq!(me["knowledge_bases"], json!([]));
    assert_eq!(audit(e, "ldap.groups", "ann"), ["removed staff"]);
    // The local admin is untouched by all of it.
    assert_eq!(root.get("/api/me").status, 200);
    assert_eq!(
        anon.login("root", "local-root-pass").get("/api/me").status,
        200
    );

    // The CLI sync, on the same data folder once the server is gone: ann leaves too.
    drop(s);
    ldap.delete(&person("ann"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zhiku"));
    cmd.args(["user", "sync-ldap"])
        .env("ZHIKU_DATA_DIR", &data)
        .env("ZHIKU_GENERATE__BACKEND", "none")
        .env_remove("ZHIKU_CONFIG")
        .current_dir(dir.path());
    for (k, v) in ldap.env() {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert!(
        out.contains("locked out ann: gone from the directory"),
        "{out}"
    );
    assert!(
        out.contains("checked 1 LDAP accounts: 1 locked out"),
        "{out}"
    );
    // What the directory says about a name, to check a configuration.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zhiku"));
    cmd.args(["user", "ldap-lookup", "root"])
        .env("ZHIKU_DATA_DIR", &data)
        .env("ZHIKU_GENERATE__BACKEND", "none")
        .env_remove("ZHIKU_CONFIG")
        .current_dir(dir.path())
        .envs(ldap.env());
    let out = run(&mut cmd);
    assert!(out.contains(&format!("dn\t{}", person("root"))), "{out}");
    assert!(out.contains("zhiku groups\tloop-a, loop-b"), "{out}");
}

#[test]
fn a_sync_that_finds_nobody_locks_nobody_out() {
    let Some(slapd_bin) = slapd_binary() else {
        return;
    };
    let ldap = Slapd::start(&slapd_bin);
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(zhiku(ldap.config(&dir.path().join("data"))), None);
    let ann = s.client().login("ann", "ann-pass-1");
    let ben = s.client().login("ben", "ben-pass-1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A wrong base DN (say, after a directory reorganisation) finds none of them.
    let mut cfg = s.state.engine.config.auth.ldap.clone();
    cfg.base_dn = format!("ou=elsewhere,{SUFFIX}");
    let e = rt
        .block_on(zhiku_server::ldap::sync(&s.state.engine.meta, &cfg))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("none of the 2 accounts") && e.contains("base_dn"),
        "{e}"
    );
    assert_eq!(ann.get("/api/me").status, 200);
    assert_eq!(ben.get("/api/me").status, 200);
    // An unreachable directory changes nothing either.
    cfg.base_dn = s.state.engine.config.auth.ldap.base_dn.clone();
    cfg.url = Some(format!("ldap://127.0.0.1:{}", free_port()));
    let e = rt
        .block_on(zhiku_server::ldap::sync(&s.state.engine.meta, &cfg))
        .unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert_eq!(ben.get("/api/me").status, 200);
    // The real directory: nothing to change.
    let report = sync(&s.state.engine);
    assert_eq!(
        (report.checked, report.disabled.len()),
        (2, 0),
        "{report:?}"
    );
}

#[test]
fn member_of_groups_direct_bind_and_tls() {
    let Some(slapd_bin) = slapd_binary() else {
        return;
    };
    let ldap = Slapd::start(&slapd_bin);
    let dir = tempfile::tempdir().unwrap();

    // memberOf (the overlay) with zhiku following nested groups, and a direct bind.
    let mut c = ldap.config(&dir.path().join("a"));
    c.auth.ldap.groups = LdapGroups::MemberOf;
    c.auth.ldap.bind = zhiku_core::config::LdapBind::Direct;
    c.auth.ldap.user_dn_template = Some(format!("uid={{login}},ou=people,{SUFFIX}"));
    let s = TestServer::start(zhiku(c), None);
    let anon = s.client();
    let me = anon.login("ann", "ann-pass-1").get("/api/me").json();
    assert_eq!(
        groups(&me),
        ["engineering", "loop-a", "loop-b", "platform", "staff"]
    );
    assert_eq!(login_status(&anon, "ann", "wrong-pass-1"), 401);
    // A DN-template login cannot reach another entry: `,` is escaped in the DN.
    assert_eq!(login_status(&anon, "ann,ou=people", "ann-pass-1"), 401);
    assert_eq!(login_status(&anon, "cara", "cara-pass-1"), 401);
    drop(s);

    let Some((ldaps, ca)) = ldap.tls.clone() else {
        return;
    };
    // LDAPS and StartTLS, trusting the test CA only.
    for (url, starttls) in [(ldaps.clone(), false), (ldap.url.clone(), true)] {
        let mut c = ldap.config(&dir.path().join(format!("tls-{starttls}")));
        c.auth.ldap.url = Some(url.clone());
        c.auth.ldap.starttls = starttls;
        c.auth.ldap.ca_file = Some(ca.clone());
        let s = TestServer::start(zhiku(c), None);
        let me = s.client().login("ben", "ben-pass-1").get("/api/me").json();
        assert_eq!(groups(&me), ["staff"], "{url} starttls={starttls}");
    }
    // Without the test CA the server's certificate is not trusted: the login fails as
    // "directory unreachable" (503), never as a login.
    let mut c = ldap.config(&dir.path().join("untrusted"));
    c.auth.ldap.url = Some(ldaps);
    c.auth.ldap.ca_file = Some(common::samples().join("../../README.md"));
    let e = zhiku_server::ldap::Directory::new(&c.auth.ldap)
        .err()
        .unwrap();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    c.auth.ldap.ca_file = None;
    let s = TestServer::start(zhiku(c), None);
    let r = s.client().post_json(
        "/api/login",
        &json!({"name": "ben", "password": "ben-pass-1"}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
}

#[test]
fn the_periodic_sync_locks_out_a_removed_user() {
    let Some(slapd_bin) = slapd_binary() else {
        return;
    };
    let ldap = Slapd::start(&slapd_bin);
    let dir = tempfile::tempdir().unwrap();
    let mut c = ldap.config(&dir.path().join("data"));
    c.auth.ldap.sync_interval_secs = 1;
    let s = TestServer::start(zhiku(c), None);
    let ben = s.client().login("ben", "ben-pass-1");
    assert_eq!(ben.get("/api/me").status, 200);
    ldap.delete(&person("ben"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while ben.get("/api/me").status == 200 {
        assert!(
            Instant::now() < deadline,
            "the background sync did not lock ben out within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ben.get("/api/me").status, 401);
    let log = s.state.engine.meta.audit_log(100, 0).unwrap();
    assert!(
        log.iter()
            .any(|a| a.actor == "ldap-sync" && a.action == "ldap.disable" && a.target == "ben"),
        "{log:?}"
    );
}
