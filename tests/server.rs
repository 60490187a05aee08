//! The server end to end on 127.0.0.1: sessions and CSRF, API tokens, admin-only
//! endpoints, permissions enforced in answers, validation, rate limits, the generation
//! queue, streamed answers. Uses the hashing test embedder (fast, lexical).

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zhiku_core::engine::Engine;
use zhiku_core::store::meta::Role;
use zhiku_llm::generate::{
    ChatMessage, FinishReason, GenerationStats, Generator, Result as GenResult, SamplingParams,
};

use common::HashEmbedder;
use common::http::{Client, TestServer};

/// Two knowledge bases: `hr` (leave policy, read by group staff) and `it` (IT help desk
/// FAQ, read by group ops). alice is in staff, bob in ops, root is an admin.
fn setup(dir: &std::path::Path, tweak: impl FnOnce(&mut zhiku_core::config::Config)) -> Engine {
    let mut config = common::config(dir);
    tweak(&mut config);
    let e = Engine::open(config)
        .unwrap()
        .with_embedder(HashEmbedder::new());
    common::hr_and_it(&e);
    e
}

fn server(tweak: impl FnOnce(&mut zhiku_core::config::Config)) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let e = setup(&dir.path().join("data"), tweak);
    (dir, TestServer::start(e, None))
}

fn ask(c: &Client, body: serde_json::Value) -> common::http::Response {
    c.post_json("/api/ask", &body)
}

#[test]
fn sessions_csrf_and_logout() {
    let (_d, s) = server(|_| {});
    let anon = s.client();
    assert_eq!(anon.get("/api/me").status, 401);
    let wrong = anon.post_json(
        "/api/login",
        &json!({"name": "alice", "password": "nope-nope"}),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], "unauthorized");
    let nobody = anon.post_json(
        "/api/login",
        &json!({"name": "zed", "password": "password-1"}),
    );
    assert_eq!(
        nobody.status, 401,
        "unknown users look like wrong passwords"
    );

    let r = anon.post_json(
        "/api/login",
        &json!({"name": "alice", "password": "password-1"}),
    );
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback: {cookie}"
    );

    let alice = anon.login("alice", "password-1");
    let me = alice.get("/api/me").json();
    assert_eq!(me["user"]["name"], "alice");
    assert_eq!(me["knowledge_bases"], json!(["hr"]));

    // A cookie-authenticated write without the CSRF header is refused.
    let no_csrf = alice.clone().with_header("X-CSRF-Token", "forged");
    let r = no_csrf.post_json("/api/tokens", &json!({"name": "x"}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        alice.post_json("/api/tokens", &json!({"name": "x"})).status,
        201
    );

    assert_eq!(alice.request("POST", "/api/logout", None, &[]).status, 204);
    assert_eq!(alice.get("/api/me").status, 401, "the session ended");
}

#[test]
fn members_only_see_and_ask_their_knowledge_bases() {
    let (_d, s) = server(|_| {});
    let alice = s.client().login("alice", "password-1");
    let bob = s.client().login("bob", "password-1");
    let kbs = |c: &Client| -> Vec<String> {
        c.get("/api/kbs")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kbs(&alice), ["hr"]);
    assert_eq!(kbs(&bob), ["it"]);
    assert_eq!(kbs(&s.client().login("root", "password-1")), ["hr", "it"]);

    // Asking another group's knowledge base by name: 404, as for one that does not exist.
    let r = ask(
        &bob,
        json!({"question": "年休假有几天", "kb": "hr", "stream": false}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r2 = ask(
        &bob,
        json!({"question": "年休假有几天", "kb": "nope", "stream": false}),
    );
    assert_eq!(r2.status, 404);
    assert_eq!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("hr", "nope"),
        r2.json()["error"]["message"]
    );

    // Asking everything bob may read never cites the hr knowledge base.
    let a = ask(&bob, json!({"question": "年休假有几天", "stream": false})).json();
    for c in a["citations"].as_array().unwrap() {
        assert!(c["document"].as_str().unwrap().contains("IT服务台"), "{c}");
    }
    let a = ask(
        &alice,
        json!({"question": "累计工作已满10年的年休假有几天", "stream": false}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let a = a.json();
    assert_eq!(a["outcome"], "extractive", "{a}");
    assert!(
        a["answer"]
            .as_str()
            .unwrap()
            .replace("**", "")
            .contains("年休假10天"),
        "{a}"
    );
    assert!(
        a["citations"][0]["document"]
            .as_str()
            .unwrap()
            .contains("休假制度")
    );

    // A member with no group reads nothing.
    let m = &s.state.engine.meta;
    m.create_user(
        "carol",
        Some(&zhiku_core::access::hash_password("password-1").unwrap()),
        Role::Member,
    )
    .unwrap();
    let carol = s.client().login("carol", "password-1");
    assert!(kbs(&carol).is_empty());
    assert_eq!(
        ask(&carol, json!({"question": "年休假", "stream": false})).status,
        403
    );
}

#[test]
fn api_tokens_carry_their_users_rights_and_can_be_revoked() {
    let (_d, s) = server(|_| {});
    let bob = s.client().login("bob", "password-1");
    let created = bob.post_json("/api/tokens", &json!({"name": "script"}));
    assert_eq!(created.status, 201);
    let token = created.json()["token"].as_str().unwrap().to_string();
    let id = created.json()["id"].as_i64().unwrap();
    assert!(token.starts_with("zk_"));

    let t = s.client().bearer(&token);
    assert_eq!(t.get("/api/me").json()["user"]["name"], "bob");
    assert_eq!(t.get("/api/kbs").json().as_array().unwrap().len(), 1);
    assert_eq!(
        ask(
            &t,
            json!({"question": "年休假", "kb": "hr", "stream": false})
        )
        .status,
        404
    );
    assert_eq!(
        t.get("/api/users").status,
        403,
        "a member's token is not an admin"
    );
    // No CSRF needed with a token (it is not sent automatically by browsers).
    assert_eq!(
        t.post_json("/api/tokens", &json!({"name": "more"})).status,
        201
    );
    // bob may not mint tokens for others.
    assert_eq!(
        t.post_json("/api/tokens", &json!({"name": "x", "user": "root"}))
            .status,
        403
    );

    // Listing never shows secrets.
    let listed = bob.get("/api/tokens").text();
    assert!(!listed.contains(&token[5..]), "{listed}");

    // alice cannot revoke bob's token; bob can.
    let alice = s.client().login("alice", "password-1");
    assert_eq!(alice.delete(&format!("/api/tokens/{id}")).status, 404);
    assert_eq!(bob.delete(&format!("/api/tokens/{id}")).status, 204);
    assert_eq!(t.get("/api/me").status, 401);
    assert_eq!(s.client().bearer("zk_bogus").get("/api/me").status, 401);
}

#[test]
fn admin_endpoints_are_for_admins() {
    let (_d, s) = server(|_| {});
    let anon = s.client();
    let alice = s.client().login("alice", "password-1");
    let root = s.client().login("root", "password-1");
    for (method, path, body) in [
        ("GET", "/api/users", None),
        (
            "POST",
            "/api/users",
            Some(json!({"name": "dave", "password": "password-2"})),
        ),
        ("PATCH", "/api/users/bob", Some(json!({"role": "admin"}))),
        ("DELETE", "/api/users/bob", None),
        ("GET", "/api/groups", None),
        ("POST", "/api/groups", Some(json!({"name": "g"}))),
        ("DELETE", "/api/groups/ops", None),
        ("POST", "/api/kbs", Some(json!({"name": "new"}))),
        ("PATCH", "/api/kbs/hr", Some(json!({"name": "hr2"}))),
        ("DELETE", "/api/kbs/it", None),
        ("PUT", "/api/kbs/hr/groups/ops", None),
        ("DELETE", "/api/kbs/hr/groups/staff", None),
    ] {
        let send = |c: &Client| match &body {
            Some(b) => c.send_json(method, path, b),
            None => c.request(method, path, None, &[]),
        };
        assert_eq!(send(&anon).status, 401, "{method} {path} anonymous");
        assert_eq!(send(&alice).status, 403, "{method} {path} as a member");
    }

    // The admin's way: a user in a new group, granted a knowledge base.
    let r = root.post_json(
        "/api/users",
        &json!({"name": "dave", "password": "password-2", "groups": ["finance"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["groups"], json!(["finance"]));
    assert_eq!(
        root.request("PUT", "/api/kbs/it/groups/finance", None, &[])
            .status,
        204
    );
    let dave = s.client().login("dave", "password-2");
    assert_eq!(dave.get("/api/me").json()["knowledge_bases"], json!(["it"]));

    // Validation: 400 with a reason; conflicts: 409; missing: 404.
    let r = root.post_json("/api/users", &json!({"name": "eve", "password": "short"}));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 8")
    );
    assert_eq!(
        root.post_json(
            "/api/users",
            &json!({"name": "a b", "password": "password-2"})
        )
        .status,
        400
    );
    assert_eq!(
        root.post_json(
            "/api/users",
            &json!({"name": "dave", "password": "password-2"})
        )
        .status,
        409
    );
    assert_eq!(
        root.post_json("/api/kbs", &json!({"name": "../x"})).status,
        400
    );
    assert_eq!(root.post_json("/api/kbs", &json!({"nom": "x"})).status, 400);
    assert_eq!(
        root.request(
            "POST",
            "/api/kbs",
            Some(b"{not json".to_vec()),
            &[("Content-Type", "application/json")]
        )
        .status,
        400
    );
    assert_eq!(
        root.request("PUT", "/api/kbs/nope/groups/ops", None, &[])
            .status,
        404
    );
    assert_eq!(
        root.delete("/api/users/root").status,
        409,
        "the last admin stays"
    );

    // Renaming keeps grants; deleting removes the knowledge base for everyone.
    assert_eq!(
        root.send_json("PATCH", "/api/kbs/it", &json!({"name": "helpdesk"}))
            .status,
        204
    );
    assert_eq!(
        dave.get("/api/me").json()["knowledge_bases"],
        json!(["helpdesk"])
    );
    assert_eq!(root.delete("/api/kbs/helpdesk").status, 204);
    assert!(dave.get("/api/kbs").json().as_array().unwrap().is_empty());

    // A changed password ends the user's sessions.
    assert_eq!(
        root.send_json(
            "PATCH",
            "/api/users/dave",
            &json!({"password": "password-3"})
        )
        .status,
        200
    );
    assert_eq!(dave.get("/api/me").status, 401);
}

/// Admins link and unlink WeCom userids through the API with the CLI's rules: one userid per
/// user (ignoring case, as WeCom does), clear errors, and a refused change changes nothing.
#[test]
fn admins_link_wecom_userids() {
    let (_d, s) = server(|_| {});
    let root = s.client().login("root", "password-1");
    let alice = s.client().login("alice", "password-1");
    let link = |c: &Client, user: &str, id: serde_json::Value| {
        c.send_json(
            "PATCH",
            &format!("/api/users/{user}"),
            &json!({ "wecom_user": id }),
        )
    };
    let listed = |user: &str| {
        root.get("/api/users")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == user)
            .unwrap()["wecom_user"]
            .clone()
    };
    let message = |r: &common::http::Response| {
        r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(link(&alice, "alice", json!("ZhangSan")).status, 403);

    let r = link(&root, "alice", json!(" ZhangSan "));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["wecom_user"], "ZhangSan", "trimmed");
    assert_eq!(listed("alice"), "ZhangSan", "shown in the users list");
    assert_eq!(
        s.state
            .engine
            .meta
            .user_by_wecom("ZhangSan")
            .unwrap()
            .unwrap()
            .name,
        "alice"
    );

    // Linked to another user, in any case: 409 naming the holder; bob is unchanged, even
    // the role sent along.
    for id in ["ZhangSan", "zhangsan"] {
        let r = root.send_json(
            "PATCH",
            "/api/users/bob",
            &json!({"wecom_user": id, "role": "admin"}),
        );
        assert_eq!(r.status, 409, "{}", r.text());
        let m = message(&r);
        assert!(m.contains(id) && m.contains("alice"), "{m}");
    }
    let bob = root.get("/api/users").json();
    let bob = bob
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bob")
        .unwrap();
    assert_eq!(
        (bob["role"].clone(), bob["wecom_user"].clone()),
        (json!("member"), json!(null))
    );
    let r = root.post_json(
        "/api/users",
        &json!({"name": "carol", "password": "password-2", "wecom_user": "ZhangSan"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        root.get("/api/users").json().as_array().unwrap().len(),
        3,
        "carol not made"
    );

    // Unknown user 404, a userid WeCom would not make 400.
    let r = link(&root, "nobody", json!("LiSi"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(message(&r).contains("nobody"), "{}", r.text());
    for bad in ["张三", "a b", &"x".repeat(65)] {
        let r = link(&root, "bob", json!(bad));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(message(&r).contains("WeCom userid"), "{}", r.text());
    }

    // Relinking to oneself is fine; null or "" unlinks; absent leaves it alone.
    assert_eq!(link(&root, "alice", json!("ZhangSan")).status, 200);
    assert_eq!(link(&root, "alice", json!(null)).status, 200);
    assert_eq!(listed("alice"), json!(null));
    assert_eq!(
        link(&root, "bob", json!("ZhangSan")).status,
        200,
        "free again"
    );
    assert_eq!(
        root.send_json("PATCH", "/api/users/bob", &json!({"groups": ["ops"]}))
            .status,
        200
    );
    assert_eq!(listed("bob"), "ZhangSan");
    assert_eq!(link(&root, "bob", json!("")).status, 200);
    assert_eq!(listed("bob"), json!(null));

    // A new user with a userid; the changes are audited.
    let r = root.post_json(
        "/api/users",
        &json!({"name": "carol", "password": "password-2", "wecom_user": "LiSi"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["wecom_user"], "LiSi");
    let audit = root.get("/api/admin/audit").text();
    assert!(
        audit.contains("wecom LiSi") && audit.contains("wecom (none)"),
        "{audit}"
    );
}

#[test]
fn questions_are_validated_and_rate_limited() {
    let (_d, s) = server(|c| {
        c.server.ip_questions_per_s = 1;
        c.server.user_questions_per_s = 100;
    });
    let alice = s.client().login("alice", "password-1");
    assert_eq!(
        ask(&alice, json!({"question": "  ", "stream": false})).status,
        400
    );
    // A burst of 2 (twice the rate of 1/s); refused questions count too.
    let long = "问".repeat(4001);
    let r = ask(&alice, json!({"question": long, "stream": false}));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4000")
    );
    let r = ask(&alice, json!({"question": "年休假", "stream": false}));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    // Other endpoints are not limited.
    assert_eq!(alice.get("/api/me").status, 200);
}

#[test]
fn failed_logins_hold_up_the_account_then_the_address() {
    let (_d, s) = server(|c| {
        c.server.login_failures_per_name = 3;
        c.server.login_failures_per_ip = 5;
    });
    let anon = s.client();
    let login = |name: &str, password: &str| {
        anon.post_json("/api/login", &json!({"name": name, "password": password}))
    };
    // A success in between clears the name's count.
    assert_eq!(login("alice", "wrong-one").status, 401);
    anon.login("alice", "password-1");
    for _ in 0..3 {
        assert_eq!(login("alice", "wrong-one").status, 401);
    }
    // The fourth attempt is refused before its password is checked, even the right one.
    let r = login("Alice", "password-1");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((800..=900).contains(&wait), "the 15-minute window: {wait}");
    assert!(r.text().contains("this account"), "{}", r.text());
    // Another account from the same address still logs in: 4 failures so far.
    anon.login("bob", "password-1");
    assert_eq!(login("nobody", "guess-guess").status, 401);
    // Five failures from this address: every name is held up now.
    let r = login("bob", "password-1");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("this address"), "{}", r.text());
}

#[test]
fn answers_stream_as_server_sent_events() {
    let (_d, s) = server(|_| {});
    let alice = s.client().login("alice", "password-1");
    let r = ask(
        &alice,
        json!({"question": "病假超过3天要怎么办", "kb": "hr"}),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = r.events();
    let text: String = events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{events:?}");
    let done: serde_json::Value = serde_json::from_str(done).unwrap();
    assert_eq!(done["answer"].as_str().unwrap(), text);
    assert!(text.contains("人力资源部"), "{text}");
    assert!(!done["citations"].as_array().unwrap().is_empty());
}

/// Writes one piece of text every 50 ms until cancelled or `pieces` are out; counts calls.
struct Slow {
    pieces: usize,
    running: std::sync::atomic::AtomicUsize,
    sent: std::sync::atomic::AtomicUsize,
}

impl Generator for Slow {
    fn model_id(&self) -> &str {
        "slow"
    }
    fn context_length(&self) -> usize {
        100_000
    }
    fn count_prompt_tokens(&self, m: &[ChatMessage]) -> GenResult<usize> {
        Ok(m.iter().map(|m| m.content.chars().count()).sum())
    }
    fn generate(
        &self,
        m: &[ChatMessage],
        _p: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> GenResult<GenerationStats> {
        use std::sync::atomic::Ordering::SeqCst;
        self.running.fetch_add(1, SeqCst);
        let start = Instant::now();
        let mut finish = FinishReason::Length;
        let mut n = 0;
        for _ in 0..self.pieces {
            std::thread::sleep(Duration::from_millis(50));
            n += 1;
            self.sent.fetch_add(1, SeqCst);
            if on_text("年假[1]。").is_break() {
                finish = FinishReason::Cancelled;
                break;
            }
        }
        self.running.fetch_sub(1, SeqCst);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(GenerationStats {
            prompt_tokens: self.count_prompt_tokens(m)?,
            completion_tokens: n,
            ttft_ms: 50.0,
            total_ms: ms,
            tokens_per_s: 20.0,
            finish,
        })
    }
}

/// A request that has no response when `server.request_timeout_secs` runs out gets a JSON
/// 503 naming the setting (not an empty body), and the server stays healthy.
#[test]
fn a_request_over_the_time_limit_gets_a_503_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let e = setup(&dir.path().join("data"), |c| {
        c.server.request_timeout_secs = 1;
    });
    // 60 pieces × 50 ms: a 3 s answer, asked without streaming.
    let slow = Arc::new(Slow {
        pieces: 60,
        running: Default::default(),
        sent: Default::default(),
    });
    let s = TestServer::start(e, Some(slow));
    let alice = s.client().login("alice", "password-1");
    let r = alice.post_json(
        "/api/ask",
        &json!({"question": "累计工作已满10年的年休假有几天", "kb": "hr", "stream": false}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("server.request_timeout_secs"), "{message}");
    assert_eq!(s.client().get("/healthz").status, 200);
}

#[test]
fn a_full_generation_queue_answers_503_and_a_gone_client_stops_generation() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let e = setup(&dir.path().join("data"), |c| {
        c.server.generation_slots = 1;
        c.server.generation_queue = 1;
        c.server.user_questions_per_s = 100;
        c.server.ip_questions_per_s = 100;
    });
    let slow = Arc::new(Slow {
        pieces: 100,
        running: Default::default(),
        sent: Default::default(),
    });
    let s = TestServer::start(e, Some(slow.clone()));
    let alice = s.client().login("alice", "password-1");
    let q = json!({"question": "累计工作已满10年的年休假有几天", "kb": "hr"});

    // One question generating (its client hangs up after the first bytes), one waiting:
    // a third is refused at once.
    let hang_up = {
        let c = alice.clone();
        let body = q.to_string();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut sock = std::net::TcpStream::connect(c.addr).unwrap();
            let mut head = format!(
                "POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in &c.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            sock.write_all(head.as_bytes()).unwrap();
            sock.write_all(body.as_bytes()).unwrap();
            let mut buf = [0u8; 256];
            let _ = sock.read(&mut buf);
            std::thread::sleep(Duration::from_millis(300));
            drop(sock);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while slow.running.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "generation never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let waiting = {
        let c = alice.clone();
        let q = q.clone();
        std::thread::spawn(move || c.post_json("/api/ask", &q).status)
    };
    while s.state.queue_depth() == 0 {
        assert!(Instant::now() < deadline, "second question never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = ask(&alice, q.clone());
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());

    // The hung-up client's generation stops long before its 100 pieces (5 s).
    hang_up.join().unwrap();
    while slow.running.load(SeqCst) > 0 && slow.sent.load(SeqCst) < 100 {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The waiting question then runs to completion.
    assert_eq!(waiting.join().unwrap(), 200);
    assert!(
        slow.sent.load(SeqCst) < 200,
        "the first generation was not cancelled: {}",
        slow.sent.load(SeqCst)
    );
}

#[test]
fn health_openapi_and_unknown_paths() {
    let (_d, s) = server(|_| {});
    let c = s.client();
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.get("/readyz").status, 200);
    let doc = c.get("/api/openapi.json").json();
    assert!(doc["paths"]["/api/ask"]["post"].is_object(), "{doc}");
    let r = c.get("/no/such/page");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
}
