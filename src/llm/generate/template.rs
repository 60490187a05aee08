//! Chat templates: the model's own Jinja2 `chat_template` (from `tokenizer_config.json` or
//! the GGUF key `tokenizer.chat_template`) rendered with minijinja the way Hugging Face
//! `apply_chat_template` does: `trim_blocks` and `lstrip_blocks` on, `{% break %}` /
//! `{% continue %}`, Python string methods (`.strip()`, `.startswith()`, `.split()`, via
//! minijinja-contrib's pycompat), `raise_exception(msg)`, `strftime_now(fmt)`, and the
//! variables `messages`, `add_generation_prompt = true`, `bos_token`, `eos_token`.
//!
//! A model without a template gets ChatML (`<|im_start|>role\n…<|im_end|>\n`); the loader
//! logs that, because a wrong template quietly degrades answers.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, Error, ErrorKind, Value, context};

use super::{ChatMessage, GenerateError, Result};

/// ChatML, used only when the model brings no template.
pub(crate) const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] \
    + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}\
    {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const NAME: &str = "chat";

/// A compiled chat template with the special-token strings it may refer to.
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)` as Llama 3.x templates call it; only `%d`, `%b`, `%B`, `%m`,
/// `%Y` are expanded (the date, UTC), which is all those templates use.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m - 1) as usize];
    format
        .replace("%d", &format!("{d:02}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%Y", &y.to_string())
        .replace("%B", month)
        .replace("%b", &month[..3])
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl ChatTemplate {
    /// Compile `source`. `bos_token`/`eos_token` are the strings templates may print.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| GenerateError::Template(e.to_string()))?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| GenerateError::Template(format!("the model's chat template: {e:#}")))?;
        Ok(Self {
            env,
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
        })
    }

    /// The ChatML fallback.
    pub fn chatml(bos_token: Option<&str>, eos_token: Option<&str>) -> Self {
        Self::new(CHATML, bos_token, eos_token).expect("the built-in ChatML template compiles")
    }

    /// Render the prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        self.render_with(messages, true)
    }

    /// Render a finished conversation (its last message the assistant's reply) without a
    /// generation prompt: what fine-tuning trains on.
    pub fn render_conversation(&self, messages: &[ChatMessage]) -> Result<String> {
        self.render_with(messages, false)
    }

    fn render_with(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| GenerateError::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => Value::from(Serde(messages)),
            add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| GenerateError::Template(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen2.5-Instruct's template, as shipped in its tokenizer_config.json.
    const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

    /// GLM-4-9B-chat's template (tools branch shortened): `[gMASK]<sop>` prefix, role
    /// tags without end markers, generation prompt `<|assistant|>`.
    const GLM4: &str = "[gMASK]<sop>{% for item in messages %}{% if item['tools'] is defined %}<|system|>\n\
工具说明{% endif %}{% if item['role'] == 'user' %}<|user|>\n{{ item['content'] }}\
{% elif item['role'] == 'assistant' %}<|assistant|>\n{{ item['content'] }}\
{% elif item['role'] == 'system' %}<|system|>\n{{ item['content'] }}\
{% elif item['role'] == 'observation' %}<|observation|>\n{{ item['content'] }}{% endif %}\
{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

    #[test]
    fn qwen_chatml_template_renders_like_transformers() {
        let t = ChatTemplate::new(QWEN25, None, Some("<|im_end|>")).unwrap();
        let out = t
            .render(&[
                ChatMessage::system("Answer from the context."),
                ChatMessage::user("年假几天？"),
            ])
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nAnswer from the context.<|im_end|>\n\
             <|im_start|>user\n年假几天？<|im_end|>\n<|im_start|>assistant\n"
        );
        // Without a system message the template adds its default one.
        let out = t.render(&[ChatMessage::user("hi")]).unwrap();
        assert!(out.starts_with("<|im_start|>system\nYou are Qwen"), "{out}");
        assert!(out.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
    }

    #[test]
    fn glm4_template_renders() {
        let t = ChatTemplate::new(GLM4, None, Some("<|endoftext|>")).unwrap();
        let out = t
            .render(&[
                ChatMessage::system("S"),
                ChatMessage::user("问题"),
                ChatMessage::assistant("答"),
                ChatMessage::user("再问"),
            ])
            .unwrap();
        assert_eq!(
            out,
            "[gMASK]<sop><|system|>\nS<|user|>\n问题<|assistant|>\n答<|user|>\n再问<|assistant|>"
        );
    }

    #[test]
    fn python_methods_loop_controls_and_special_tokens() {
        let src = "{{ bos_token }}{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}\
            {% if m.content.startswith('skip') %}{% continue %}{% endif %}\
            [{{ m.role|upper }}:{{ m.content.strip() }}]{% endfor %}{{ eos_token }}";
        let t = ChatTemplate::new(src, Some("<s>"), Some("</s>")).unwrap();
        let out = t
            .render(&[
                ChatMessage::user("  a  "),
                ChatMessage::assistant("skip me"),
                ChatMessage::user("never"),
            ])
            .unwrap();
        assert_eq!(out, "<s>[USER:a]</s>");
    }

    #[test]
    fn raise_exception_is_a_template_error() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}ok";
        let t = ChatTemplate::new(src, None, None).unwrap();
        assert_eq!(t.render(&[ChatMessage::user("x")]).unwrap(), "ok");
        let err = t.render(&[ChatMessage::assistant("x")]).unwrap_err();
        assert!(
            matches!(&err, GenerateError::Template(m) if m.contains("roles must alternate")),
            "{err}"
        );
    }

    #[test]
    fn chatml_fallback_and_bad_template() {
        let out = ChatTemplate::chatml(None, None)
            .render(&[ChatMessage::user("q")])
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(matches!(
            ChatTemplate::new("{% for %}", None, None),
            Err(GenerateError::Template(_))
        ));
        assert!(strftime_now("%d %b %Y".into()).len() == 11);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
