//! The README's main job through the real binary and the real embedding model: ingest the
//! sample documents, then answer `zhiku search` queries in Chinese and English.

mod common;

use common::zhiku;

#[test]
fn ingest_samples_and_search() {
    let Some(model) = common::e5_model() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let samples = common::samples();
    let out = zhiku(
        &data,
        &model,
        &["ingest", samples.to_str().unwrap(), "--kb", "handbook"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5 added"), "{stdout}");

    let cases = [
        ("年假怎么计算？", "员工手册-休假制度.txt"),
        ("出差住酒店每晚最多报销多少钱", "差旅费报销管理办法.pdf"),
        (
            "How long must a password be?",
            "information-security-policy.pdf",
        ),
        (
            "What should I do if my laptop is stolen?",
            "information-security-policy.pdf",
        ),
        ("Can I work from home?", "remote-work-guidelines.md"),
        ("忘记邮箱密码怎么办", "IT服务台常见问题.txt"),
    ];
    for (q, want) in cases {
        let out = zhiku(
            &data,
            &model,
            &["search", q, "--kb", "handbook", "--top", "3", "--json"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let first = &hits[0];
        for key in ["text", "document", "title", "page", "score"] {
            assert!(first.get(key).is_some(), "missing {key}: {first}");
        }
        assert!(
            first["document"].as_str().unwrap().ends_with(want),
            "{q} → {first}"
        );
    }

    let out = zhiku(&data, &model, &["search", "x", "--kb", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
