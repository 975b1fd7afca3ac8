//! Hugging Face chat templates, rendered in Rust as `transformers`' (4.46)
//! `apply_chat_template(messages, tokenize=False, ...)` renders them.
//!
//! The template is Jinja, run with `minijinja` set up like transformers' `_compile_jinja_template`:
//! `trim_blocks` and `lstrip_blocks` on, the trailing newline dropped, `break`/`continue`, no
//! auto-escaping, the globals `raise_exception(msg)` (its message comes back as a
//! [`RaisedException`] in the error chain) and a `tojson` filter that writes what Python's
//! `json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)` writes.
//! Python's string and dict methods (`.strip()`, `.startswith()`, `.items()`, ...) come from
//! `minijinja-contrib`'s pycompat; `strip`/`lstrip`/`rstrip` and the `trim` filter use Python's
//! set of whitespace. A render sees `messages` (maps with `role` and `content`),
//! `add_generation_prompt`, `tools` and `documents` (both none), the tokenizer's special tokens
//! as transformers' `special_tokens_map` gives them (`bos_token`, `eos_token`, `unk_token`,
//! `pad_token`, ..., `additional_special_tokens`; unset ones are undefined) and `date_string`.
//!
//! Determinism: the Llama-3.1/3.2 instruct templates write "Today Date: " + `date_string`, and
//! when `date_string` is undefined transformers fills it from the wall clock through its
//! `strftime_now` global. Here `date_string` is always defined ([`DEFAULT_DATE_STRING`], the
//! date those templates fall back to; [`ChatTemplate::with_date_string`] changes it) and there
//! is no `strftime_now` at all, so the same messages always give the same text; a template that
//! calls `strftime_now` unguarded fails to render instead of reading the clock. The reference
//! fixtures pass the same `date_string` to transformers.
//!
//! The text holds BOS and the other special tokens where the template writes them: encode it
//! without adding special tokens, as transformers does (`add_special_tokens=False`).
//!
//! Not reproduced: the `{% generation %}` tag (assistant-token masks), `continue_final_message`,
//! tools and documents, and transformers' per-class default special tokens (only what the
//! model folder's files say is used).

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

/// The `date_string` every render sees unless [`ChatTemplate::with_date_string`] sets another:
/// the date the Llama-3.1/3.2 templates fall back to without `strftime_now`.
pub const DEFAULT_DATE_STRING: &str = "26 Jul 2024";

/// transformers' `SPECIAL_TOKENS_ATTRIBUTES`, in its order.
const SPECIAL_TOKENS: [&str; 8] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "additional_special_tokens",
];

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` (or whatever else the template knows).
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The template called `raise_exception(message)`: the render stopped on purpose (Llama-2's
/// template does this for roles that do not alternate user/assistant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedException {
    pub message: String,
}

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RaisedException {}

/// A compiled chat template with the special tokens and `date_string` its renders see.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from (a file, or `<inline>`): the name in every error.
    name: String,
    /// (name, value) of the special tokens that are set, in [`SPECIAL_TOKENS`] order.
    special_tokens: Vec<(&'static str, Value)>,
    date_string: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("special_tokens", &self.special_tokens)
            .field("date_string", &self.date_string)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source` with the given BOS / EOS strings (the other special tokens unset).
    /// A syntax error names the template `<inline>` and the line.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let tokens = [("bos_token", bos_token), ("eos_token", eos_token)]
            .into_iter()
            .filter_map(|(name, token)| Some((name, Value::from(token.filter(|t| !t.is_empty())?))))
            .collect();
        Self::compile("<inline>".to_string(), source.to_string(), tokens)
    }

    /// Reads the chat template of a Hugging Face model folder, where transformers finds it:
    /// `chat_template.jinja` if present (newer transformers; it wins over the config), else
    /// `chat_template.json` (`{"chat_template": ...}`, the processor format), else
    /// `tokenizer_config.json`'s `chat_template`. A template is a string or a list of
    /// `{name, template}`, of which the one named `default` is used. The special tokens come from
    /// `tokenizer_config.json` (strings or AddedToken objects `{"content": ...}`), and, as in
    /// transformers' legacy path, from `special_tokens_map.json` when the config has no
    /// `added_tokens_decoder`. `Ok(None)` when the folder has no template.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>> {
        if !dir.is_dir() {
            bail!("model folder {} does not exist", dir.display());
        }
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json_object(&config_path)?.unwrap_or_default();

        let jinja_path = dir.join("chat_template.jinja");
        let json_path = dir.join("chat_template.json");
        let (name, source) = if jinja_path.is_file() {
            let source =
                std::fs::read_to_string(&jinja_path).with_context(|| format!("reading {}", jinja_path.display()))?;
            (jinja_path.display().to_string(), source)
        } else if let Some(file) = read_json_object(&json_path)? {
            match file.get("chat_template") {
                Some(value) if !value.is_null() => select_template(&json_path, value)?,
                _ => bail!("{} has no \"chat_template\"", json_path.display()),
            }
        } else {
            match config.get("chat_template") {
                Some(value) if !value.is_null() => select_template(&config_path, value)?,
                _ => return Ok(None),
            }
        };

        let mut tokens = config.clone();
        if !config.contains_key("added_tokens_decoder") {
            let map_path = dir.join("special_tokens_map.json");
            if let Some(map) = read_json_object(&map_path)? {
                tokens.extend(map);
            }
        }
        let mut special_tokens = Vec::new();
        for name in SPECIAL_TOKENS {
            let value = match tokens.get(name) {
                Some(value) => {
                    special_token_value(name, value).with_context(|| format!("reading {name} in {}", dir.display()))?
                }
                None => None,
            };
            special_tokens.extend(value.map(|value| (name, value)));
        }
        Self::compile(name, source, special_tokens).map(Some)
    }

    /// Sets the `date_string` renders see (default [`DEFAULT_DATE_STRING`]); transformers would
    /// use today's date in its place for templates that read the clock.
    pub fn with_date_string(mut self, date_string: impl Into<String>) -> Self {
        self.date_string = date_string.into();
        self
    }

    /// Where the template came from: its file (and entry), or `<inline>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let mut context: Vec<(&str, Value)> = self.special_tokens.clone();
        context.extend([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
            ("date_string", Value::from(self.date_string.as_str())),
        ]);
        let template = self.template()?;
        template.render(Value::from_pairs(context)).map_err(|err| {
            let context = format!("rendering chat template {}", self.name);
            match raised_exception(&err) {
                Some(raised) => {
                    anyhow::Error::new(raised).context(format!("{context}: the template raised an exception"))
                }
                None => anyhow::Error::new(err).context(context),
            }
        })
    }

    /// One QA pair as TOFU and the MSA paper's official setting format it: `(prompt, full)` with
    /// `prompt = render([system?, user question], add_generation_prompt = true)` and
    /// `full = render([system?, user question, assistant answer], false)`. The trained answer
    /// is `full[prompt.len()..]`; an error if `full` does not start with `prompt`.
    pub fn qa_pair(&self, system_prompt: Option<&str>, question: &str, answer: &str) -> Result<(String, String)> {
        let mut messages: Vec<Message> = system_prompt.map(Message::system).into_iter().collect();
        messages.push(Message::user(question));
        let prompt = self.render(&messages, true)?;
        messages.push(Message::assistant(answer));
        let full = self.render(&messages, false)?;
        if !full.starts_with(&prompt) {
            bail!(
                "chat template {}: the rendered conversation does not start with its prompt, so the answer cannot be split off\nprompt: {prompt:?}\nfull:   {full:?}",
                self.name
            );
        }
        Ok((prompt, full))
    }

    fn compile(name: String, source: String, special_tokens: Vec<(&'static str, Value)>) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(python_method);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_filter("trim", python_trim);
        env.add_template_owned(name.clone(), source)
            .map_err(|err| anyhow::Error::new(err).context(format!("compiling chat template {name}")))?;
        Ok(Self { env, name, special_tokens, date_string: DEFAULT_DATE_STRING.to_string() })
    }

    fn template(&self) -> Result<minijinja::Template<'_, '_>> {
        Ok(self.env.get_template(&self.name)?)
    }
}

/// A JSON file's top-level object; `None` when the file does not exist.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Map<String, Json>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))? {
        Json::Object(map) => Ok(Some(map)),
        other => bail!("{} is not a JSON object but {other}", path.display()),
    }
}

/// A `chat_template` entry: a string, or a list of `{name, template}` of which `default` is used
/// (transformers' `get_chat_template` without a name or tools). Returns (name for errors, source).
fn select_template(path: &Path, value: &Json) -> Result<(String, String)> {
    match value {
        Json::String(source) => Ok((format!("{} (chat_template)", path.display()), source.clone())),
        Json::Array(entries) => {
            let mut names = BTreeSet::new();
            for entry in entries {
                let (Some(name), Some(template)) =
                    (entry.get("name").and_then(Json::as_str), entry.get("template").and_then(Json::as_str))
                else {
                    bail!("{}: a chat_template list entry is not {{\"name\", \"template\"}}: {entry}", path.display());
                };
                if name == "default" {
                    return Ok((format!("{} (chat_template \"default\")", path.display()), template.to_string()));
                }
                names.insert(name);
            }
            bail!("{} has several chat templates and none named \"default\" (found {names:?})", path.display())
        }
        other => bail!("{}: chat_template is neither a string nor a list but {other}", path.display()),
    }
}

/// A special token as transformers' `special_tokens_map` shows it: the string (an AddedToken's
/// `content`), or for `additional_special_tokens` the list of strings; unset (None) when null or
/// empty, since transformers leaves falsy values out.
fn special_token_value(name: &str, value: &Json) -> Result<Option<Value>> {
    let token = |value: &Json| -> Result<Option<String>> {
        match value {
            Json::Null => Ok(None),
            Json::String(s) => Ok(Some(s.clone())),
            Json::Object(map) => match map.get("content") {
                Some(Json::String(s)) => Ok(Some(s.clone())),
                _ => bail!("an AddedToken object without a string \"content\": {value}"),
            },
            other => bail!("neither a string nor an AddedToken object: {other}"),
        }
    };
    if name == "additional_special_tokens" {
        let list = match value {
            Json::Null => return Ok(None),
            Json::Array(items) => items.iter().map(token).collect::<Result<Vec<_>>>()?,
            other => bail!("not a list: {other}"),
        };
        let list: Vec<Value> = list.into_iter().flatten().map(Value::from).collect();
        return Ok((!list.is_empty()).then(|| Value::from(list)));
    }
    Ok(token(value)?.filter(|s| !s.is_empty()).map(Value::from))
}

/// The `raise_exception` global: fails the render with the template's message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("raise_exception: {message}"))
        .with_source(RaisedException { message }))
}

/// The [`RaisedException`] inside a render error, if the template raised one.
fn raised_exception(err: &Error) -> Option<RaisedException> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return Some(raised.clone());
        }
        source = e.source();
    }
    None
}

/// Python's `str.isspace()` set (Rust's `char::is_whitespace` lacks U+001C..U+001F).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip` / `lstrip` / `rstrip`: without `chars`, Python whitespace.
fn python_strip(s: &str, chars: Option<&str>, start: bool, end: bool) -> String {
    let strip = |c: char| match chars {
        Some(chars) => chars.contains(c),
        None => is_python_space(c),
    };
    let s = if start { s.trim_start_matches(strip) } else { s };
    let s = if end { s.trim_end_matches(strip) } else { s };
    s.to_string()
}

/// Jinja2's `trim` filter (`value.strip(chars)`).
fn python_trim(value: String, chars: Option<String>) -> String {
    python_strip(&value, chars.as_deref(), true, true)
}

/// Python methods on values: `strip`/`lstrip`/`rstrip` with Python's whitespace, the rest from
/// `minijinja-contrib`'s pycompat.
fn python_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(s), "strip" | "lstrip" | "rstrip") = (value.as_str(), method) {
        let (chars,): (Option<&str>,) = minijinja::value::from_args(args)?;
        let (start, end) = match method {
            "strip" => (true, true),
            "lstrip" => (true, false),
            _ => (false, true),
        };
        return Ok(Value::from(python_strip(s, chars, start, end)));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, arguments positional or by keyword.
fn tojson(value: &Value, args: minijinja::value::Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let names = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > names.len() {
        return Err(Error::new(ErrorKind::TooManyArguments, "tojson takes at most 4 arguments"));
    }
    let mut given: [Value; 4] = Default::default();
    for (slot, arg) in given.iter_mut().zip(args.iter()) {
        *slot = arg.clone();
    }
    for (slot, name) in given.iter_mut().zip(names) {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            *slot = v;
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = given;
    let indent = match indent.kind() {
        ValueKind::Undefined | ValueKind::None => None,
        ValueKind::String => Some(indent.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Some(" ".repeat(indent.as_i64().unwrap_or(0).max(0) as usize)),
        _ => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: indent must be a number or a string")),
    };
    let (item_sep, key_sep) = match separators.kind() {
        ValueKind::Undefined | ValueKind::None => {
            (if indent.is_some() { "," } else { ", " }.to_string(), ": ".to_string())
        }
        _ => {
            let parts: Vec<Value> = separators.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                    (a.as_str().unwrap_or_default().to_string(), b.as_str().unwrap_or_default().to_string())
                }
                _ => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be two strings")),
            }
        }
    };
    let options =
        JsonOptions { ensure_ascii: ensure_ascii.is_true(), indent, item_sep, key_sep, sort_keys: sort_keys.is_true() };
    let mut out = String::new();
    write_json(&mut out, value, &options, 0)?;
    Ok(out)
}

struct JsonOptions {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// Python's `json.dumps` encoder, over minijinja values.
fn write_json(out: &mut String, value: &Value, o: &JsonOptions, depth: usize) -> Result<(), Error> {
    let not_serializable = |kind: ValueKind| {
        Error::new(ErrorKind::InvalidOperation, format!("tojson: a {kind} value is not JSON serializable"))
    };
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&python_number(value)),
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, '[', ']', &items, o, depth, |out, item, depth| write_json(out, item, o, depth))?;
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                let key = match key.kind() {
                    ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                    ValueKind::Number => python_number(&key),
                    ValueKind::Bool => (if key.is_true() { "true" } else { "false" }).to_string(),
                    ValueKind::None => "null".to_string(),
                    kind => return Err(not_serializable(kind)),
                };
                entries.push((key, item));
            }
            if o.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, '{', '}', &entries, o, depth, |out, (key, item), depth| {
                write_json_string(out, key, o.ensure_ascii);
                out.push_str(&o.key_sep);
                write_json(out, item, o, depth)
            })?;
        }
        kind => return Err(not_serializable(kind)),
    }
    Ok(())
}

fn write_container<T>(
    out: &mut String,
    open: char,
    close: char,
    items: &[T],
    o: &JsonOptions,
    depth: usize,
    mut write_item: impl FnMut(&mut String, &T, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, depth: usize| {
        if let Some(indent) = &o.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth));
        }
    };
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&o.item_sep);
        }
        newline(out, depth + 1);
        write_item(out, item, depth + 1)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

/// Python's `json` string escaping (`ensure_ascii` writes every non-ASCII char as `\uXXXX`,
/// surrogate pairs above U+FFFF).
fn write_json_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as Python's `json` writes it: integers as digits, floats as `repr(float)`.
fn python_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    python_float_repr(f)
}

/// `repr(float)` (as `json.dumps` writes floats): shortest round-trip digits, positional for
/// exponents -4 ..= 15 with at least one decimal, else `d.ddde±XX`.
fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    // "{:e}" gives the shortest round-trip digits as d.ddd e exp.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let body = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if digits.len() as i32 <= exp + 1 {
            format!("{}{}.0", digits, "0".repeat((exp + 1 - digits.len() as i32) as usize))
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let mantissa = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let exp_sign = if exp < 0 { "-" } else { "+" };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (f, python) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (123456.789, "123456.789"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
            (1.2345e20, "1.2345e+20"),
            (0.0, "0.0"),
        ] {
            assert_eq!(python_float_repr(f), python, "repr({f:e})");
        }
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':'), sort_keys=true) }}|{{ 'é\"\\n' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}",
            None,
            None,
        )
        .unwrap();
        let env = &t.env;
        let out = env
            .get_template(&t.name)
            .unwrap()
            .render(Value::from_pairs([(
                "x",
                Value::from_pairs([
                    ("b", Value::from(vec![Value::from(1), Value::from(2.5), Value::from(())])),
                    ("a", Value::from(true)),
                    ("c", Value::from(Vec::<Value>::new())),
                ]),
            )]))
            .unwrap();
        // python3 -c 'import json; x={"b":[1,2.5,None],"a":True,"c":[]}; print("|".join([json.dumps(x, ensure_ascii=False), json.dumps(x, ensure_ascii=False, indent=2), json.dumps(x, ensure_ascii=False, separators=(",",":"), sort_keys=True), json.dumps("é\"\n", ensure_ascii=False), json.dumps("é")]))'
        let python = "{\"b\": [1, 2.5, null], \"a\": true, \"c\": []}|{\n  \"b\": [\n    1,\n    2.5,\n    null\n  ],\n  \"a\": true,\n  \"c\": []\n}|{\"a\":true,\"b\":[1,2.5,null],\"c\":[]}|\"é\\\"\\n\"|\"\\u00e9\"";
        assert_eq!(out, python);
    }

    #[test]
    fn python_whitespace_strip() {
        let t = ChatTemplate::new(
            "[{{ s.strip() }}][{{ s | trim }}][{{ s.lstrip() }}][{{ 'xxaxx'.strip('x') }}]",
            None,
            None,
        )
        .unwrap();
        let out = t.env.get_template(&t.name).unwrap().render(Value::from_pairs([("s", " \u{1c}a\u{a0} ")])).unwrap();
        assert_eq!(out, "[a][a][a\u{a0} ][a]");
    }
}
