#!/usr/bin/python3
"""Reference renderings for the chat-template differential test.

Renders (1) >= 200 seeded random conversations with the Granite-4.0-H chat template from
assets/tokenizer/tokenizer_config.json and (2) small feature templates, with jinja2 configured as
transformers configures it (ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), tojson = json.dumps(ensure_ascii=False, ...), raise_exception global, special
tokens passed as variables). Writes {"templates": {id: source}, "cases": [...]} as UTF-8 JSON; each case has
template, messages, tools, documents, add_generation_prompt, extra, and either expected or error.
Run with /usr/bin/python3 (Debian python3-jinja2).
"""
import argparse
import json
import os
import random
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_features import FEATURE_TEMPLATES  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


TEXTS = [
    "Hello", "What's the weather like in Boston right now?", "", " ", "line one\nline two\n",
    "quotes \" and ' and \\ backslash", "tabs\tand\r\ncarriage", "control \x01\x1f\x7f chars",
    "unicode: héllo wörld — ünïcödé ✓ 日本語 😀", "<tool_call>not really</tool_call>", "{{ not a tag }}",
    "  leading and trailing  ", "<|end_of_text|>", "multi\n\nparagraph\n\n", "数字 123 and 4.5",
]
NAMES = ["get_current_weather", "search", "calc", "lookup_ünïcode", "noop"]


def rand_text(rng):
    if rng.random() < 0.3:
        return " ".join(rng.choice(TEXTS) for _ in range(rng.randint(1, 3)))
    return rng.choice(TEXTS)


def rand_scalar(rng):
    return rng.choice([
        0, 1, -7, 42, 2**40, 0.1, 1.0, -2.5, 1e-05, 1e16, 123456789.125, 3.0e-7, 1e22, True, False, None,
        "str", "ünï", "a\"b", "x\ny", "😀",
    ])


def rand_json(rng, depth=0):
    r = rng.random()
    if depth > 2 or r < 0.5:
        return rand_scalar(rng)
    if r < 0.75:
        return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "b", "city", "ключ", "z", "n", "list"]) + str(i): rand_json(rng, depth + 1)
            for i in range(rng.randint(0, 3))}


def rand_tool(rng):
    name = rng.choice(NAMES)
    props = {f"p{i}": {"type": rng.choice(["string", "number", "integer", "boolean"]),
                       "description": rand_text(rng)} for i in range(rng.randint(0, 3))}
    fn = {"name": name, "description": rand_text(rng),
          "parameters": {"type": "object", "properties": props, "required": sorted(props)[:1]}}
    if rng.random() < 0.2:
        fn["extra"] = rand_json(rng)
    return {"type": "function", "function": fn}


def rand_tool_call(rng, i):
    args = {k: rand_json(rng) for k in rng.sample(["city", "q", "n", "flag", "ünï"], rng.randint(0, 3))}
    if rng.random() < 0.3:
        args = json.dumps(args, ensure_ascii=rng.random() < 0.5)  # string arguments are emitted raw
    fn = {"name": rng.choice(NAMES), "arguments": args}
    if rng.random() < 0.15:
        return fn  # no "function" wrapper
    call = {"type": "function", "function": fn}
    if rng.random() < 0.5:
        call = {"id": f"call_{i}", **call}
    return call


def rand_content(rng):
    r = rng.random()
    if r < 0.65:
        return rand_text(rng)
    if r < 0.85:
        parts = []
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.75:
                parts.append({"type": "text", "text": rand_text(rng)})
            else:
                parts.append({"type": "image_url", "image_url": {"url": "http://x/y.png"}})
        return parts
    return None


def rand_conversation(rng, i):
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rand_content(rng)})
    for _ in range(rng.randint(1, 6)):
        role = rng.choices(["user", "assistant", "tool", "system", "developer"], [5, 4, 2, 1, 0.3])[0]
        if role == "assistant":
            m = {"role": "assistant", "content": rand_content(rng)}
            if rng.random() < 0.5:
                m["tool_calls"] = [rand_tool_call(rng, k) for k in range(rng.randint(1, 3))]
            messages.append(m)
            if "tool_calls" in m and rng.random() < 0.8:
                for k in range(rng.randint(1, 3)):
                    messages.append({"role": "tool", "tool_call_id": f"call_{k}", "content": rand_text(rng)})
        else:
            m = {"role": role, "content": rand_content(rng)}
            if role == "user" and rng.random() < 0.1:
                m["name"] = "bob"
            if rng.random() < 0.05:
                del m["content"]
            messages.append(m)
    tools = [rand_tool(rng) for _ in range(rng.randint(1, 3))] if rng.random() < 0.5 else None
    if tools is not None and rng.random() < 0.1:
        tools = []
    documents = None
    if rng.random() < 0.3:
        documents = [{"doc_id": k, "title": rand_text(rng), "text": rand_text(rng)} for k in range(rng.randint(1, 3))]
    extra = {}
    if rng.random() < 0.1:
        extra["available_tools"] = [rand_tool(rng)]
    return {"name": f"granite_random_{i}", "template": "granite", "messages": messages, "tools": tools,
            "documents": documents, "add_generation_prompt": rng.random() < 0.7, "extra": extra}


def spec_cases():
    weather = {"type": "function", "function": {"name": "get_current_weather",
               "description": "Get the current weather for a specified city.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string",
                              "description": "Name of the city"}}, "required": ["city"]}}}
    base = {"template": "granite", "documents": None, "add_generation_prompt": True, "extra": {}}
    return [
        {**base, "name": "spec_user_only", "tools": None, "messages": [{"role": "user", "content":
         "Please list one IBM Research laboratory located in the United States. You should only output its name and location."}]},
        {**base, "name": "spec_one_tool", "tools": [weather], "messages": [{"role": "user", "content":
         "What's the weather like in Boston right now?"}]},
        {**base, "name": "spec_tool_calls", "tools": [weather], "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Boston and Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "get_current_weather", "arguments": {"city": "Boston"}}},
                {"type": "function", "function": {"name": "get_current_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "content": "Boston: sunny, 30C"}, {"role": "tool", "content": "Paris: rain, 12C"}]},
    ]


def render(env, templates, case, specials):
    tmpl = env.from_string(templates[case["template"]])
    kwargs = dict(specials) if case["template"] == "granite" else {}
    kwargs.update(case["extra"])
    return tmpl.render(messages=case["messages"], tools=case["tools"], documents=case["documents"],
                       add_generation_prompt=case["add_generation_prompt"], **kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20251007)
    ap.add_argument("--conversations", type=int, default=240)
    args = ap.parse_args()
    with open(os.path.join(ROOT, "assets/tokenizer/tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
    templates = {"granite": config["chat_template"]}
    rng = random.Random(args.seed)
    cases = spec_cases() + [rand_conversation(rng, i) for i in range(args.conversations)]
    for name, (source, contexts) in FEATURE_TEMPLATES.items():
        templates[name] = source
        for k, ctx in enumerate(contexts(rng)):
            cases.append({"name": f"{name}_{k}", "template": name, "messages": ctx.pop("messages", []),
                          "tools": ctx.pop("tools", None), "documents": ctx.pop("documents", None),
                          "add_generation_prompt": ctx.pop("add_generation_prompt", False), "extra": ctx})
    env = make_env()
    for case in cases:
        try:
            case["expected"] = render(env, templates, case, specials)
        except Exception as e:  # noqa: BLE001 - any template error is an expected-error case
            case["error"] = f"{type(e).__name__}: {e}"
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"templates": templates, "cases": cases}, f, ensure_ascii=False, indent=1)
    n_err = sum("error" in c for c in cases)
    print(f"wrote {len(cases)} cases ({n_err} expected errors) to {args.out}")


if __name__ == "__main__":
    main()
