use std::time::Instant;

use tantivy::tokenizer::{TokenStream, Tokenizer};

use super::*;

fn doc<'a>(chunk: ChunkId, kb: KbId, doc: DocId, title: &'a str, text: &'a str) -> KeywordDoc<'a> {
    KeywordDoc {
        chunk,
        kb,
        doc,
        title,
        text,
        readers: &EVERYONE_READERS,
    }
}

static EVERYONE_READERS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| vec![crate::store::EVERYONE.to_string()]);

fn chunks(hits: &[ScoredChunk]) -> Vec<ChunkId> {
    hits.iter().map(|h| h.chunk).collect()
}

fn open(dir: &tempfile::TempDir) -> KeywordIndex {
    KeywordIndex::open(dir.path(), None).unwrap()
}

fn sample(index: &KeywordIndex) {
    index
        .add(&[
            doc(
                1,
                1,
                10,
                "员工手册",
                "年假按照工龄计算，工作满一年不满十年的，年休假五天。",
            ),
            doc(
                2,
                1,
                10,
                "员工手册",
                "报销流程：员工提交发票后，由财务部门审核并在十个工作日内付款。",
            ),
            doc(
                3,
                1,
                11,
                "IT 指南",
                "连接公司 VPN 之前，请先安装客户端并使用域账号登录。",
            ),
            doc(4, 2, 12, "机密", "董事会会议纪要：年假政策将于明年调整。"),
        ])
        .unwrap();
    index.commit().unwrap();
}

#[test]
fn chinese_query_finds_the_right_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    sample(&index);
    assert_eq!(index.count().unwrap(), 4);

    let hits = index.search("年假怎么计算", &[1], 10).unwrap();
    assert_eq!(hits.first().map(|h| h.chunk), Some(1), "{hits:?}");
    assert!(!chunks(&hits).contains(&4));

    let hits = index.search("发票报销要多久", &[1], 10).unwrap();
    assert_eq!(hits.first().map(|h| h.chunk), Some(2), "{hits:?}");

    let hits = index.search("怎么连VPN", &[1], 10).unwrap();
    assert_eq!(hits.first().map(|h| h.chunk), Some(3), "{hits:?}");
}

#[test]
fn kb_filter_is_inside_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    sample(&index);
    // Chunk 4 (kb 2) matches 年假 too but is never returned for kbs [1].
    let hits = index.search("年假", &[1], 10).unwrap();
    assert_eq!(chunks(&hits), vec![1]);
    let hits = index.search("董事会", &[1], 10).unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    let hits = index.search("年假", &[2], 10).unwrap();
    assert_eq!(chunks(&hits), vec![4]);
    let mut both = chunks(&index.search("年假", &[1, 2], 10).unwrap());
    both.sort_unstable();
    assert_eq!(both, vec![1, 4]);
    assert!(index.search("年假", &[], 10).unwrap().is_empty());
    assert!(index.search("年假", &[3], 10).unwrap().is_empty());
}

#[test]
fn user_dictionary_keeps_a_term_whole() {
    // jieba's default dictionary splits these company terms; 上海交通大学 it already knows.
    let dir = tempfile::tempdir().unwrap();
    let plain = open(&dir);
    assert_eq!(plain.analyze("零信任网关"), vec!["零", "信任", "网关"]);
    assert_eq!(plain.analyze("智库助手"), vec!["智库", "助手"]);
    assert!(
        plain
            .analyze("上海交通大学")
            .iter()
            .any(|t| t == "上海交通大学")
    );
    drop(plain);

    let dict = dir.path().join("user.dict");
    std::fs::write(
        &dict,
        "\u{feff}# company terms\n\n零信任网关 n\n智庫助手\n上海交通大学 100 nt\n",
    )
    .unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    let index = KeywordIndex::open(index_dir.path(), Some(&dict)).unwrap();
    let terms = index.analyze("我们部署了零信任网关");
    assert!(terms.iter().any(|t| t == "零信任网关"), "{terms:?}");
    // Search mode also indexes the parts.
    assert!(terms.iter().any(|t| t == "信任"), "{terms:?}");
    assert!(terms.iter().any(|t| t == "网关"), "{terms:?}");
    // Dictionary entries are folded like text: the traditional entry works for both scripts.
    assert!(
        index
            .analyze("试用智库助手")
            .iter()
            .any(|t| t == "智库助手")
    );
    assert!(
        index
            .analyze("試用智庫助手")
            .iter()
            .any(|t| t == "智库助手")
    );
    let terms = index.analyze("我在上海交通大学读书");
    assert!(terms.iter().any(|t| t == "上海交通大学"), "{terms:?}");

    index
        .add(&[
            doc(1, 1, 1, "", "他毕业于上海交通大学电子系。"),
            doc(2, 1, 2, "", "上海的大学很多，交通也很方便。"),
            doc(3, 1, 3, "", "北京大学在海淀区。"),
            doc(4, 1, 4, "", "所有远程访问都经过零信任网关。"),
            doc(5, 1, 5, "", "网关的信任配置由运维负责。"),
        ])
        .unwrap();
    index.commit().unwrap();
    let hits = index.search("上海交通大学", &[1], 10).unwrap();
    assert_eq!(hits.first().map(|h| h.chunk), Some(1), "{hits:?}");
    let hits = index.search("零信任网关", &[1], 10).unwrap();
    assert_eq!(hits.first().map(|h| h.chunk), Some(4), "{hits:?}");
}

#[test]
fn bad_user_dictionary_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let dict = dir.path().join("bad.dict");
    std::fs::write(&dict, "好词 10 n\n坏词 1x\n").unwrap();
    let err = KeywordIndex::open(&dir.path().join("idx"), Some(&dict))
        .err()
        .expect("bad dictionary rejected");
    let msg = err.to_string();
    assert!(msg.contains("line 2") && msg.contains("bad.dict"), "{msg}");
    let missing = KeywordIndex::open(&dir.path().join("idx"), Some(&dir.path().join("nope")))
        .err()
        .expect("missing dictionary rejected");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn traditional_and_simplified_match_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    index
        .add(&[
            doc(1, 1, 1, "", "員工請假須經主管批准，並於系統中登記。"),
            doc(2, 1, 2, "", "服务器每天凌晨进行数据备份。"),
            doc(3, 1, 3, "", "食堂中午十二点开饭。"),
        ])
        .unwrap();
    index.commit().unwrap();
    // Simplified query, traditional passage.
    let hits = index.search("员工请假需要谁批准", &[1], 10).unwrap();
    assert_eq!(hits.first().map(|h| h.chunk), Some(1), "{hits:?}");
    // Traditional query, simplified passage.
    let hits = index.search("伺服器數據備份", &[1], 10).unwrap();
    assert_eq!(hits.first().map(|h| h.chunk), Some(2), "{hits:?}");
    assert_eq!(index.analyze("數據"), index.analyze("数据"));
}

#[test]
fn english_is_case_insensitive_and_width_folded() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    index
        .add(&[
            doc(
                1,
                1,
                1,
                "",
                "Configure the Kubernetes Ingress controller for HTTPS.",
            ),
            doc(2, 1, 2, "", "Our office Wi-Fi password changes monthly."),
            doc(3, 1, 3, "", "使用ＶＰＮ前请先登录。"),
        ])
        .unwrap();
    index.commit().unwrap();
    assert_eq!(
        chunks(&index.search("kubernetes INGRESS", &[1], 10).unwrap()),
        vec![1]
    );
    assert_eq!(
        chunks(&index.search("PASSWORD", &[1], 10).unwrap()),
        vec![2]
    );
    assert_eq!(chunks(&index.search("vpn", &[1], 10).unwrap()), vec![3]);
    assert_eq!(index.analyze("ＨＴＴＰＳ　Rust"), vec!["https", "rust"]);
    // Punctuation and whitespace only: no terms, no hits.
    assert!(index.analyze(" ，。!? ").is_empty());
    assert!(index.search("？！", &[1], 10).unwrap().is_empty());
}

#[test]
fn token_offsets_point_into_the_original_text() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    let text = "ＡＢＣ 員工，Hello";
    let mut tokenizer = index.analyzer.lock().unwrap().clone();
    let mut stream = tokenizer.token_stream(text);
    let mut seen = Vec::new();
    let mut last_position = None;
    while let Some(token) = stream.next() {
        assert!(last_position < Some(token.position));
        last_position = Some(token.position);
        seen.push((
            token.text.clone(),
            &text[token.offset_from..token.offset_to],
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("abc".to_string(), "ＡＢＣ"),
            ("员工".to_string(), "員工"),
            ("hello".to_string(), "Hello"),
        ]
    );
}

#[test]
fn delete_documents_removes_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    sample(&index);
    index.delete_documents(&[10]).unwrap();
    // Buffered: still visible until commit.
    assert_eq!(index.count().unwrap(), 4);
    index.commit().unwrap();
    assert_eq!(index.count().unwrap(), 2);
    assert!(index.search("年假", &[1], 10).unwrap().is_empty());
    assert!(index.search("报销", &[1], 10).unwrap().is_empty());
    assert_eq!(chunks(&index.search("VPN", &[1], 10).unwrap()), vec![3]);
    // Deleting an unknown document is fine.
    index.delete_documents(&[999]).unwrap();
    index.commit().unwrap();
    assert_eq!(index.count().unwrap(), 2);
}

#[test]
fn re_adding_a_chunk_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    sample(&index);
    index
        .add(&[doc(1, 1, 10, "员工手册", "病假需要提供医院证明。")])
        .unwrap();
    index.commit().unwrap();
    assert_eq!(index.count().unwrap(), 4);
    assert_eq!(chunks(&index.search("病假", &[1], 10).unwrap()), vec![1]);
    assert!(!chunks(&index.search("工龄", &[1], 10).unwrap()).contains(&1));
}

#[test]
fn reopen_keeps_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = open(&dir);
        sample(&index);
        // Not committed: lost on drop.
        index.add(&[doc(9, 1, 19, "", "草稿箱里的内容")]).unwrap();
    }
    let index = open(&dir);
    assert_eq!(index.count().unwrap(), 4);
    assert_eq!(
        index
            .search("年假怎么计算", &[1], 10)
            .unwrap()
            .first()
            .map(|h| h.chunk),
        Some(1)
    );
    assert!(index.search("草稿箱", &[1], 10).unwrap().is_empty());
}

#[test]
fn second_writer_gets_a_clear_lock_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir);
    sample(&first);
    // A second handle can open and search, but not write while the first holds the lock.
    let second = open(&dir);
    assert_eq!(second.count().unwrap(), 4);
    let err = second.add(&[doc(5, 1, 5, "", "内容")]).unwrap_err();
    assert!(matches!(err, KeywordError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("another zhiku process"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    // Once the first is gone, the second can write.
    drop(first);
    second.add(&[doc(5, 1, 5, "", "内容")]).unwrap();
    second.commit().unwrap();
    assert_eq!(second.count().unwrap(), 5);
}

#[test]
fn clear_empties_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    sample(&index);
    index.clear().unwrap();
    assert_eq!(index.count().unwrap(), 0);
    assert!(index.search("年假", &[1, 2], 10).unwrap().is_empty());
    drop(index);
    assert_eq!(open(&dir).count().unwrap(), 0);
}

#[test]
fn limit_and_best_first_ordering() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    let texts: Vec<String> = (0..20)
        .map(|i| {
            // Chunk i mentions 报销 i+1 times in a text of equal length.
            let mut t = "报销".repeat(i + 1);
            t.push_str(&"天气".repeat(20 - i));
            t
        })
        .collect();
    let docs: Vec<KeywordDoc<'_>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(i as u64, 1, i as i64, "", t))
        .collect();
    index.add(&docs).unwrap();
    index.commit().unwrap();
    let hits = index.search("报销", &[1], 5).unwrap();
    assert_eq!(chunks(&hits), vec![19, 18, 17, 16, 15]);
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "{hits:?}"
    );
    assert!(hits.iter().all(|h| h.score > 0.0));
    assert!(index.search("报销", &[1], 0).unwrap().is_empty());
    assert_eq!(index.search("报销", &[1], 100).unwrap().len(), 20);
}

#[test]
fn title_matches_count_but_text_matters_more() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    index
        .add(&[
            doc(1, 1, 1, "差旅", "出差前填写申请表。"),
            doc(2, 1, 2, "其他", "差旅费用按标准报销。"),
            doc(3, 1, 3, "其他", "出差前填写申请表。"),
        ])
        .unwrap();
    index.commit().unwrap();
    let hits = index.search("差旅", &[1], 10).unwrap();
    assert_eq!(chunks(&hits), vec![2, 1]);
}

/// Latency at 10k chunks; run with `cargo test --release --lib store::keyword -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_search_10k() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    let vocab = [
        "年假",
        "报销",
        "发票",
        "服务器",
        "数据",
        "备份",
        "员工",
        "请假",
        "审批",
        "流程",
        "财务",
        "部门",
        "合同",
        "客户",
        "项目",
        "会议",
        "安全",
        "密码",
        "网络",
        "系统",
        "登录",
        "权限",
        "培训",
        "考勤",
        "加班",
        "工资",
        "社保",
        "公积金",
        "采购",
        "供应商",
        "质量",
        "测试",
        "发布",
        "版本",
        "文档",
    ];
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let texts: Vec<String> = (0..10_000)
        .map(|_| {
            let mut t = String::new();
            for _ in 0..120 {
                t.push_str(vocab[(rand() % vocab.len() as u64) as usize]);
                t.push_str(if rand() % 5 == 0 { "。" } else { "的" });
            }
            t
        })
        .collect();
    let start = Instant::now();
    for (batch, part) in texts.chunks(1000).enumerate() {
        let docs: Vec<KeywordDoc<'_>> = part
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let id = (batch * 1000 + i) as u64;
                doc(id, (id % 4) as i64, (id / 10) as i64, "公司制度", t)
            })
            .collect();
        index.add(&docs).unwrap();
    }
    index.commit().unwrap();
    eprintln!("indexed 10k chunks in {:?}", start.elapsed());
    assert_eq!(index.count().unwrap(), 10_000);

    let queries = [
        "年假怎么计算",
        "报销发票流程",
        "服务器数据备份",
        "员工请假审批",
        "密码忘了怎么登录系统",
    ];
    let mut times = Vec::new();
    for round in 0..200 {
        let q = queries[round % queries.len()];
        let t = Instant::now();
        let hits = index.search(q, &[0, 1, 2], 20).unwrap();
        times.push(t.elapsed());
        assert_eq!(hits.len(), 20);
    }
    times.sort_unstable();
    eprintln!(
        "search 10k chunks, 3 of 4 kbs, limit 20: median {:?}, p90 {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() * 9 / 10],
        times[times.len() - 1]
    );
}

#[test]
fn index_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KeywordIndex>();
    assert_send_sync::<KeywordError>();
}

#[test]
fn question_words_do_not_outrank_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    index
        .add(&[
            doc(
                1,
                1,
                10,
                "IT 常见问题",
                "问：忘记密码怎么办？答：自助重置。问：打印机坏了怎么办？答：提交工单。问：电脑怎么申请？",
            ),
            doc(2, 1, 11, "休假制度", "年休假按工龄计算：满一年不满十年的，年休假五天。"),
        ])
        .unwrap();
    index.commit().unwrap();
    let hits = index.search("年休假怎么计算？", &[1], 5).unwrap();
    assert_eq!(chunks(&hits), vec![2], "only the topic words may match");
    // A query of nothing but question words still searches with them.
    let hits = index.search("怎么办", &[1], 5).unwrap();
    assert_eq!(chunks(&hits), vec![1]);
}

#[test]
fn english_words_match_by_stem() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    index
        .add(&[
            doc(
                1,
                1,
                10,
                "Security",
                "Company laptops must use encryption. Lost devices are reported within 2 hours.",
            ),
            doc(2, 1, 11, "Leave", "Annual leave is fifteen days."),
        ])
        .unwrap();
    index.commit().unwrap();
    assert_eq!(chunks(&index.search("laptop", &[1], 5).unwrap()), vec![1]);
    assert_eq!(
        chunks(&index.search("report a device", &[1], 5).unwrap()),
        vec![1]
    );
    // Chinese text is untouched by the English stemmer.
    assert_eq!(index.analyze("报销流程"), index.analyze("报销流程 "));
}

/// Restricted chunks come back only to readers with one of their principals, filtered in
/// the query: a forbidden chunk that matches best does not crowd out the allowed ones.
#[test]
fn readers_filter_inside_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(&dir);
    let g7 = vec!["g:7".to_string()];
    let g78 = vec!["g:7".to_string(), "g:8".to_string()];
    index
        .add(&[
            KeywordDoc {
                readers: &g7,
                ..doc(1, 1, 10, "薪酬", "高管薪酬方案 高管薪酬 高管薪酬")
            },
            KeywordDoc {
                readers: &g78,
                ..doc(2, 1, 11, "薪酬", "高管薪酬方案")
            },
            doc(3, 1, 12, "制度", "薪酬发放日为每月十日"),
        ])
        .unwrap();
    index.commit().unwrap();
    let who = |p: &[&str]| Reader::Principals(p.iter().map(|s| s.to_string()).collect());
    let hits = index.search_as("高管薪酬", &[1], &who(&["*"]), 1).unwrap();
    assert_eq!(chunks(&hits), vec![3]);
    let hits = index
        .search_as("高管薪酬", &[1], &who(&["*", "g:8"]), 10)
        .unwrap();
    assert_eq!(chunks(&hits), vec![2, 3]);
    let hits = index
        .search_as("高管薪酬", &[1], &who(&["*", "g:7"]), 10)
        .unwrap();
    assert_eq!(chunks(&hits), vec![1, 2, 3]);
    assert!(
        index
            .search_as("高管薪酬", &[1], &who(&[]), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        chunks(&index.search("高管薪酬", &[1], 10).unwrap()),
        vec![1, 2, 3]
    );
    // Re-adding a chunk with other readers replaces the old entry.
    index
        .add(&[doc(1, 1, 10, "薪酬", "高管薪酬方案 高管薪酬 高管薪酬")])
        .unwrap();
    index.commit().unwrap();
    let hits = index.search_as("高管薪酬", &[1], &who(&["*"]), 10).unwrap();
    assert_eq!(chunks(&hits), vec![1, 3]);
    assert_eq!(index.count().unwrap(), 3);
}

/// An index written with the layout before reader filters is recreated empty on open (and
/// says so), instead of refusing to open: its chunks are then re-added from SQLite.
#[test]
fn index_without_readers_field_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (old, _) = schema_of(false);
        let index = Index::create_in_dir(dir.path(), old).unwrap();
        index
            .tokenizers()
            .register(TOKENIZER, ZhTokenizer::new(jieba_for(None).unwrap()));
        let mut w: IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        let chunk = index.schema().get_field("chunk").unwrap();
        let mut d = TantivyDocument::new();
        d.add_u64(chunk, 1);
        w.add_document(d).unwrap();
        w.commit().unwrap();
    }
    let index = open(&dir);
    assert!(index.rebuilt());
    assert_eq!(index.count().unwrap(), 0);
    sample(&index);
    drop(index);
    let index = open(&dir);
    assert!(!index.rebuilt(), "a current index is kept");
    assert!(index.count().unwrap() > 0);
}
