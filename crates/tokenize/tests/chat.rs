//! Chat templates against transformers: every case of fixtures/chat/expected.json (written by
//! scripts/chat-template-reference.py with transformers' `apply_chat_template`) byte for byte,
//! the model-folder layouts, errors, and the TOFU / MSA question-answer formatting.

use std::path::Path;

use serde_json::{json, Value as Json};
use tokenize::{ChatTemplate, Message, RaisedException, DEFAULT_DATE_STRING};

fn fixture() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's template entry called `name`.
fn entry(fixture: &Json, name: &str) -> Json {
    let templates = fixture["templates"].as_array().unwrap();
    templates
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no template {name:?} in the fixture"))
        .clone()
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// A model folder holding `tokenizer_config.json` = `config`.
fn model_dir(config: &Json) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tokenizer_config.json", &serde_json::to_string_pretty(config).unwrap());
    dir
}

fn load(config: &Json) -> ChatTemplate {
    let dir = model_dir(config);
    ChatTemplate::from_model_dir(dir.path()).unwrap().expect("the folder has a chat template")
}

fn messages(conversation: &Json) -> Vec<Message> {
    let list = conversation.as_array().unwrap();
    list.iter().map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect()
}

#[test]
fn every_fixture_case_matches_transformers_byte_for_byte() {
    let fixture = fixture();
    assert_eq!(fixture["date_string"], DEFAULT_DATE_STRING);
    let mut failures = Vec::new();
    let mut checked = 0;
    for template in fixture["templates"].as_array().unwrap() {
        let name = template["name"].as_str().unwrap();
        let chat = load(&template["tokenizer_config"]);
        for case in template["cases"].as_array().unwrap() {
            let conversation = case["conversation"].as_str().unwrap();
            let add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
            let msgs = messages(&fixture["conversations"][conversation]);
            let what = format!("{name} / {conversation} / add_generation_prompt={add_generation_prompt}");
            let got = chat.render(&msgs, add_generation_prompt);
            match (&case["expected"], &case["raises"], got) {
                (Json::String(want), _, Ok(got)) if *want == got => {}
                (Json::String(want), _, got) => failures.push(format!("{what}\n  want {want:?}\n  got  {got:?}")),
                (_, Json::String(message), Err(err)) => match err.downcast_ref::<RaisedException>() {
                    Some(raised) if raised.message == *message => {}
                    _ => failures.push(format!("{what}\n  want raise_exception({message:?})\n  got  {err:#}")),
                },
                (_, raises, got) => failures.push(format!("{what}\n  want raise {raises}\n  got  {got:?}")),
            }
            checked += 1;
        }
    }
    assert!(checked >= 80, "the fixture has only {checked} cases");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from transformers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn expected_json_was_generated_from_the_current_templates_json() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat/templates.json");
    let spec: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let fixture = fixture();
    let inputs: Vec<&Json> = spec["templates"].as_array().unwrap().iter().collect();
    let rendered: Vec<&Json> = fixture["templates"].as_array().unwrap().iter().collect();
    assert_eq!(inputs.len(), rendered.len(), "rerun scripts/chat-template-reference.py");
    for (input, rendered) in inputs.iter().zip(rendered) {
        for key in ["name", "source", "tokenizer_config"] {
            assert_eq!(input[key], rendered[key], "{}: rerun scripts/chat-template-reference.py", input["name"]);
        }
    }
}

#[test]
fn raise_exception_surfaces_as_an_error_carrying_its_message() {
    let fixture = fixture();
    let llama2 = entry(&fixture, "llama-2-chat");
    let source = llama2["tokenizer_config"]["chat_template"].as_str().unwrap();
    let chat = ChatTemplate::new(source, Some("<s>"), Some("</s>")).unwrap();
    let err = chat.render(&[Message::user("a"), Message::user("b")], false).unwrap_err();
    let raised = err.downcast_ref::<RaisedException>().expect("a RaisedException in the chain");
    assert_eq!(raised.message, "Conversation roles must alternate user/assistant/user/assistant/...");
    let text = format!("{err:#}");
    assert!(text.contains("<inline>") && text.contains("Conversation roles must alternate"), "{text}");
    // Alternating roles render.
    let ok = chat.render(&[Message::user("a"), Message::assistant("b")], false).unwrap();
    assert_eq!(ok, "<s>[INST] a [/INST] b </s>");
}

#[test]
fn folder_layouts_transformers_reads() {
    let source = "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}";
    let msgs = [Message::user("hi")];

    // String form with AddedToken special tokens.
    let config = json!({
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
        "eos_token": {"content": "</s>"},
        "chat_template": source,
    });
    assert_eq!(load(&config).render(&msgs, false).unwrap(), "<s>user:hi</s>");

    // List form: the entry named "default".
    let config = json!({
        "bos_token": "<s>",
        "eos_token": "</s>",
        "chat_template": [{"name": "rag", "template": "RAG"}, {"name": "default", "template": source}],
    });
    let chat = load(&config);
    assert_eq!(chat.render(&msgs, false).unwrap(), "<s>user:hi</s>");
    assert!(chat.name().ends_with("tokenizer_config.json (chat_template \"default\")"), "{}", chat.name());

    // A list without "default" is an error that names the file and the entries.
    let dir = model_dir(&json!({"chat_template": [{"name": "rag", "template": "RAG"}]}));
    let err = format!("{:#}", ChatTemplate::from_model_dir(dir.path()).unwrap_err());
    assert!(err.contains("tokenizer_config.json") && err.contains("\"rag\""), "{err}");

    // chat_template.jinja next to the config wins over the config's template (newer transformers).
    let dir = model_dir(&json!({"bos_token": "<s>", "eos_token": "</s>", "chat_template": "CONFIG"}));
    write(dir.path(), "chat_template.jinja", source);
    let chat = ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap();
    assert_eq!(chat.render(&msgs, false).unwrap(), "<s>user:hi</s>");
    assert!(chat.name().ends_with("chat_template.jinja"), "{}", chat.name());

    // chat_template.json (the processor format) is read when there is no .jinja file.
    let dir = model_dir(&json!({"bos_token": "<s>", "eos_token": "</s>"}));
    write(dir.path(), "chat_template.json", &json!({"chat_template": source}).to_string());
    let chat = ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap();
    assert_eq!(chat.render(&msgs, false).unwrap(), "<s>user:hi</s>");

    // special_tokens_map.json fills in (and overrides) the config's tokens only when the config
    // has no added_tokens_decoder, as in transformers' legacy loading path.
    let dir = model_dir(&json!({"eos_token": "</s>", "chat_template": source}));
    write(
        dir.path(),
        "special_tokens_map.json",
        &json!({"bos_token": "<B>", "eos_token": {"content": "<E>"}}).to_string(),
    );
    assert_eq!(
        ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap().render(&msgs, false).unwrap(),
        "<B>user:hi<E>"
    );
    let dir = model_dir(&json!({"eos_token": "</s>", "added_tokens_decoder": {}, "chat_template": source}));
    write(dir.path(), "special_tokens_map.json", &json!({"bos_token": "<B>"}).to_string());
    assert_eq!(ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap().render(&msgs, false).unwrap(), "user:hi</s>");
}

#[test]
fn a_folder_without_a_template_gives_none() {
    let dir = model_dir(&json!({"bos_token": "<s>", "eos_token": "</s>", "chat_template": null}));
    assert!(ChatTemplate::from_model_dir(dir.path()).unwrap().is_none());
    let dir = model_dir(&json!({"bos_token": "<s>"}));
    assert!(ChatTemplate::from_model_dir(dir.path()).unwrap().is_none());
    let empty = tempfile::tempdir().unwrap();
    assert!(ChatTemplate::from_model_dir(empty.path()).unwrap().is_none());
    // A folder that does not exist is an error, not "no template".
    assert!(ChatTemplate::from_model_dir(&empty.path().join("missing")).is_err());
}

#[test]
fn a_broken_template_is_an_error_naming_the_file() {
    let dir = model_dir(&json!({"chat_template": "{% for m in messages %}{{ m.content }}"}));
    let err = format!("{:#}", ChatTemplate::from_model_dir(dir.path()).unwrap_err());
    let path = dir.path().join("tokenizer_config.json").display().to_string();
    assert!(err.contains(&path) && err.contains("compiling chat template"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "chat_template.jinja", "{{ messages[0].content }\n");
    let err = format!("{:#}", ChatTemplate::from_model_dir(dir.path()).unwrap_err());
    assert!(err.contains("chat_template.jinja"), "{err}");

    let err = format!("{:#}", ChatTemplate::new("{% if %}", None, None).unwrap_err());
    assert!(err.contains("<inline>"), "{err}");

    // A JSON syntax error names the file too.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tokenizer_config.json", "{\"chat_template\": ");
    let err = format!("{:#}", ChatTemplate::from_model_dir(dir.path()).unwrap_err());
    assert!(err.contains("tokenizer_config.json"), "{err}");
}

#[test]
fn date_string_is_fixed_settable_and_no_clock_is_read() {
    let fixture = fixture();
    let chat = load(&entry(&fixture, "llama-3.2-instruct")["tokenizer_config"]);
    let msgs = [Message::user("q")];
    assert!(chat.render(&msgs, true).unwrap().contains("Today Date: 26 Jul 2024\n"));
    let later = chat.clone().with_date_string("01 Jan 2030");
    assert!(later.render(&msgs, true).unwrap().contains("Today Date: 01 Jan 2030\n"));

    // strftime_now is deliberately not defined (transformers' reads the wall clock).
    let probe = ChatTemplate::new("{{ strftime_now is defined }}", None, None).unwrap();
    assert_eq!(probe.render(&msgs, false).unwrap(), "False");
    let clock = ChatTemplate::new("{{ strftime_now('%Y') }}", None, None).unwrap();
    assert!(clock.render(&msgs, false).is_err());
}

#[test]
fn qa_pair_prompt_is_a_prefix_of_the_full_text_for_every_model_template() {
    let fixture = fixture();
    for template in fixture["templates"].as_array().unwrap() {
        let name = template["name"].as_str().unwrap();
        if name == "probe" {
            continue;
        }
        let chat = load(&template["tokenizer_config"]);
        for system in [None, Some("You are a helpful assistant.")] {
            let (prompt, full) = chat.qa_pair(system, "Who wrote it?", "Jane Doe wrote it.").unwrap();
            assert!(full.starts_with(&prompt), "{name}: {prompt:?} / {full:?}");
            assert!(
                full[prompt.len()..].contains("Jane Doe wrote it."),
                "{name}: answer part {:?}",
                &full[prompt.len()..]
            );
        }
    }
}

#[test]
fn qa_pair_in_the_msa_official_setting_llama_3_2() {
    let fixture = fixture();
    let chat = load(&entry(&fixture, "llama-3.2-instruct")["tokenizer_config"]);
    let (prompt, full) = chat
        .qa_pair(Some("You are a helpful assistant."), "Where was Basil Mahfouz Al-Kuwaiti born?", "In Kuwait City.")
        .unwrap();
    assert!(prompt.starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"), "{prompt:?}");
    assert!(prompt.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"), "{prompt:?}");
    assert_eq!(
        prompt,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
         Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n\
         You are a helpful assistant.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhere was Basil Mahfouz Al-Kuwaiti born?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(&full[prompt.len()..], "In Kuwait City.<|eot_id|>");

    // TOFU's Llama-2 format: the answer follows "[/INST]" after one space.
    let llama2 = load(&entry(&fixture, "llama-2-chat")["tokenizer_config"]);
    let (prompt, full) = llama2.qa_pair(None, "Q?", "A.").unwrap();
    assert_eq!(prompt, "<s>[INST] Q? [/INST]");
    assert_eq!(full, "<s>[INST] Q? [/INST] A. </s>");
}

#[test]
fn qa_pair_refuses_a_template_whose_full_text_does_not_extend_the_prompt() {
    // Drops the generation prompt's trailing newline once an answer follows.
    let chat = ChatTemplate::new(
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>\n{% endif %}",
        None,
        None,
    )
    .unwrap();
    let err = format!("{:#}", chat.qa_pair(None, "q", "a").unwrap_err());
    assert!(err.contains("does not start with its prompt"), "{err}");
}
