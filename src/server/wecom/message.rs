//! The XML of WeCom callbacks: the envelope a POST carries (`ToUserName`, `AgentID`,
//! `Encrypt`) and the decrypted message inside it. Only text messages are answered; the
//! other kinds are named so the caller can say politely that it reads text only, and events
//! (entering the app, subscribing) are recognised and left alone.

use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("WeCom callback XML: {0}")]
pub struct XmlError(String);

/// The body of a message callback.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    #[serde(rename = "ToUserName", default)]
    pub to_user_name: String,
    #[serde(rename = "AgentID", default)]
    pub agent_id: String,
    #[serde(rename = "Encrypt")]
    pub encrypt: String,
}

impl Envelope {
    pub fn parse(xml: &str) -> Result<Self, XmlError> {
        quick_xml::de::from_str(xml).map_err(|e| XmlError(e.to_string()))
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "FromUserName", default)]
    from_user_name: String,
    #[serde(rename = "CreateTime", default)]
    create_time: i64,
    #[serde(rename = "MsgType", default)]
    msg_type: String,
    #[serde(rename = "Content")]
    content: Option<String>,
    #[serde(rename = "MsgId")]
    msg_id: Option<String>,
    #[serde(rename = "AgentID", default)]
    agent_id: String,
    #[serde(rename = "Event")]
    event: Option<String>,
}

/// A text message from an employee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// The sender's WeCom userid.
    pub from: String,
    pub content: String,
    pub msg_id: String,
    pub agent_id: String,
    /// Unix seconds.
    pub create_time: i64,
}

/// A decrypted callback message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(TextMessage),
    /// Image, voice, video, file, location, link…: answered with a note that only text is read.
    Other {
        kind: String,
        from: String,
        msg_id: String,
    },
    /// An event (entering the app, a menu click…), or a message without an id: nothing to answer.
    Event {
        kind: String,
        from: String,
    },
}

impl Incoming {
    pub fn parse(xml: &str) -> Result<Self, XmlError> {
        let raw: Raw = quick_xml::de::from_str(xml).map_err(|e| XmlError(e.to_string()))?;
        let msg_id = raw.msg_id.filter(|m| !m.trim().is_empty());
        Ok(match (raw.msg_type.as_str(), msg_id) {
            ("text", Some(msg_id)) => Incoming::Text(TextMessage {
                from: raw.from_user_name,
                content: raw.content.unwrap_or_default(),
                msg_id: msg_id.trim().to_string(),
                agent_id: raw.agent_id,
                create_time: raw.create_time,
            }),
            ("event", _) | (_, None) => Incoming::Event {
                kind: raw.event.unwrap_or(raw.msg_type),
                from: raw.from_user_name,
            },
            (kind, Some(msg_id)) => Incoming::Other {
                kind: kind.to_string(),
                from: raw.from_user_name,
                msg_id: msg_id.trim().to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_of_the_official_sample() {
        let e = Envelope::parse(
            "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\
             <Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt>\
             <AgentID><![CDATA[218]]></AgentID></xml>",
        )
        .unwrap();
        assert_eq!(e.to_user_name, "wx5823bf96d3bd56c7");
        assert_eq!(e.agent_id, "218");
        assert!(e.encrypt.starts_with("RypEvHKD8QQ"));
    }

    #[test]
    fn text_other_and_event_messages() {
        let text = Incoming::parse(
            "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\
             <FromUserName><![CDATA[mycreate]]></FromUserName><CreateTime>1409659813</CreateTime>\
             <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[年假 & <规则>]]></Content>\
             <MsgId>4561255354251345929</MsgId><AgentID>218</AgentID></xml>",
        )
        .unwrap();
        assert_eq!(
            text,
            Incoming::Text(TextMessage {
                from: "mycreate".into(),
                content: "年假 & <规则>".into(),
                msg_id: "4561255354251345929".into(),
                agent_id: "218".into(),
                create_time: 1409659813,
            })
        );
        let image = Incoming::parse(
            "<xml><FromUserName>u1</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>image</MsgType><PicUrl>http://x</PicUrl><MsgId>77</MsgId><AgentID>1</AgentID></xml>",
        )
        .unwrap();
        assert_eq!(
            image,
            Incoming::Other {
                kind: "image".into(),
                from: "u1".into(),
                msg_id: "77".into()
            }
        );
        let event = Incoming::parse(
            "<xml><FromUserName>u1</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>event</MsgType><Event>enter_agent</Event><AgentID>1</AgentID></xml>",
        )
        .unwrap();
        assert_eq!(
            event,
            Incoming::Event {
                kind: "enter_agent".into(),
                from: "u1".into()
            }
        );
    }

    #[test]
    fn broken_xml_is_an_error() {
        assert!(Envelope::parse("<xml><ToUserName>a</ToUserName></xml>").is_err());
        assert!(Envelope::parse("not xml").is_err());
        assert!(Incoming::parse("<xml><MsgType>text</MsgType>").is_err());
    }
}
