#!/usr/bin/env python3
"""Writes corpus.json: the tokenizer test corpus (deterministic; rerun after editing, then regenerate
expected_ids.json with tests/text/tokenizer/oracle/encode.mjs)."""
import json
import random
from pathlib import Path

BASE = [
    # English
    "Hello world! It's a beautiful day, isn't it?",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong said: \"That's one small step for [a] man.\"",
    "Granite-4.0-H-Tiny is a 7B-parameter hybrid Mamba2/attention mixture-of-experts model (~1B active).",
    "Please summarize the following e-mail in three bullet points:\n\n- budget: $12,345.67\n- due 2025-03-14\n",
    "Don't, won't, can't, shouldn't've, y'all'd've, I'm, you're, we've, they'll, she'd, it's.",
    "DON'T WON'T CAN'T I'M YOU'RE WE'VE THEY'LL SHE'D IT'S. Don'T wOn'T I'm YoU'Re We'Ve ThEy'Ll ShE'd.",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D 'Re 'rE 'Ll 'lL 'x 'sup 'tis",
    "URL: https://www.example.com/path/to/page?query=1&lang=en#section-2 and mail: jane.doe+test@example.org",
    "Price: 3.14159265358979323846264338327950288419716939937510 and 12345678901234567890 items.",
    "1 22 333 4444 55555 666666 7777777 88888888 999999999 0000000000",
    "v1.2.3-rc.4+build.567, 192.168.0.1:8080, 0xDEADBEEF, 1e-9, -42, +7, 3/4, 50%",
    # Code
    "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n"
    "    return fib(n - 1) + fib(n - 2)\n",
    "#include <vector>\n\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;\n"
    "\treturn v.size() > 2 ? 0 : 1;\n}\n",
    "const f = async (a, b) => { await fetch(`/api/${a}?b=${b}`); return a ?? b; };",
    "SELECT id, name FROM users WHERE created_at >= '2024-01-01' AND email LIKE '%@example.com';",
    "<div class=\"card\"><a href=\"#\">Link</a></div>\n<!-- comment -->\n<br/>",
    "{\"name\": \"quarry\", \"version\": [0, 1, 0], \"tags\": {\"a\": true, \"b\": null}}",
    "fn main() {\r\n    let s: &str = \"hi\";\r\n    println!(\"{s}\");\r\n}\r\n",
    "    indented with spaces\n\tindented with a tab\n\t\t  mixed\t \tindent\n",
    "x = [i ** 2 for i in range(10) if i % 2 == 0]  # squares of evens\n",
    "$ ls -la | grep '^d' && echo \"done\" >> /tmp/log.txt 2>&1",
    # German, Spanish, French, Czech, Dutch, Portuguese, Italian
    "Größenwahnsinnige Straßenbahnfahrer überqueren die Brücke. Äpfel, Öl und Übermut — das ist schön!",
    "Donaudampfschifffahrtsgesellschaftskapitänsmütze ist ein sehr langes deutsches Wort.",
    "¿Dónde está la biblioteca? ¡Mañana iremos al año nuevo con el niño y la señora Núñez!",
    "L'été dernier, nous sommes allés à Paris : c'était très agréable ; « Où est l'hôtel ? » demanda-t-il.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy. Čeština používá háčky a čárky.",
    "Het is een mooie dag in Amsterdam; de fietsen staan naast de gracht en 's avonds eten we stamppot.",
    "A coração do Brasil bate em São Paulo; não há nada como pão de queijo e açaí às três horas.",
    "Perché la città è così bella? Però l'anno scorso c'era più gente; è già tardi, andiamo!",
    # CJK, Korean, Arabic, Hindi
    "東京は日本の首都です。今日はいい天気ですね！カタカナとひらがなと漢字を混ぜた文章。",
    "我们今天去北京大学参观，然后在天安门广场拍照。中文没有空格，标点符号是全角的：，。！？",
    "안녕하세요! 오늘 날씨가 정말 좋네요. 한국어는 띄어쓰기를 사용합니다.",
    "مرحبا بالعالم! اللغة العربية تُكتب من اليمين إلى اليسار، وفيها أرقام ١٢٣٤٥٦٧٨٩٠.",
    "नमस्ते दुनिया! हिन्दी देवनागरी लिपि में लिखी जाती है। क्षत्रिय, ज्ञान, श्री।",
    "Русский текст: съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. עברית: שלום עולם. ไทย: สวัสดีครับ",
    # Emoji, combining marks, symbols
    "Emoji: 😀😃😄 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇩🇪🇯🇵 1️⃣ 🧑🏿‍🚀 🤷‍♀️",
    "Skin tones: 👋🏻👋🏼👋🏽👋🏾👋🏿 and ZWJ: 👩‍❤️‍💋‍👨 🧑‍🤝‍🧑 🐻‍❄️",
    "Combining: e\u0301 a\u0300 o\u0308 n\u0303 c\u0327 — Zalgo: Z\u0351\u036b\u0343a\u0367\u0308l\u0350g\u0346o",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑_{i=1}^{n} i = n(n+1)/2; √2 ≈ 1.414; ∞ ≠ ∅; → ⇒ ↔",
    "Currency: €100, £50, ¥1000, ₹500, ₩3000, $20; fractions ½ ¼ ¾; ©®™ °C",
    "Full-width: ＡＢＣ１２３！？ half-width: ｶﾀｶﾅ; ideographic space:\u3000here; nbsp:\u00a0here",
    # Whitespace
    "   leading spaces and trailing spaces   ",
    "line one\nline two\n\nline four\n\n\n\nline eight",
    "windows\r\nline\r\n\r\nendings\r\n",
    "tabs\t\tand\t \t spaces  \t\n\t mixed",
    " \n \n\t\n  \r\n   ",
    "a  b   c    d     e      f       g        h",
    "\n\n\n",
    "",
    " ",
    "x",
    "trailing newline\n",
    "!!!???...,,,;;;:::---___===+++***&&&^^^%%%$$$###@@@",
    "\"quoted\" 'single' `back` (paren) [bracket] {brace} <angle>",
    # Granite added tokens
    "<|start_of_role|>system<|end_of_role|>You are a helpful assistant.<|end_of_text|>\n"
    "<|start_of_role|>user<|end_of_role|>Hi!<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<tool_response>{\"temp\": 21}</tool_response><think>hmm</think><think_on><think_off>",
    "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n    return c<|fim_middle|>",
    "<schema>{}</schema><tools>[]</tools><documents>doc</documents><|pad|><|unk|><|unused_1|>",
    "<|start_of_plugin|>x<|end_of_plugin|><|filename|>a.py<|reponame|>quarry<|fim_pad|>",
    "text<|end_of_text|><|end_of_text|>more text <|start_of_role|> spaced <|end_of_role|> out",
    "<|endoftext|> and <|endofprompt|> are cl100k specials but plain text for Granite",
    "Almost tokens: <|start_of_role> <tool_call <think_on <|pad| <|unused_999|> </think",
    "<think>Let me think.\n\n1. First\n2. Second</think>\nThe answer is 42.",
]

WORDS = ("the of and to in is that for it as was with be by on not he I this are or his from at which but have"
         " an they you were her she there one all we can their has been if more when will would who so no").split()
LANG_SNIPPETS = [b for b in BASE[22:40]]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
ADDED = ["<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>", "<tool_call>", "</tool_call>", "<think>",
         "</think>", "<|fim_prefix|>", "<|pad|>", "<schema>", "<tools>", "<documents>", "<|unused_1|>"]
PIECES = ["a", "Z", "é", "ß", "1", "23", "456", " ", "  ", "\t", "\n", "\r\n", "\n\n", ".", ",", "!", "?", "'",
          "\"", "-", "_", "/", "\\", "(", ")", "中", "日本", "한", "ع", "न", "😀", "👍🏽", "\u0301", "\u00a0", "\u3000",
          "'s", "'LL", "'Re", "don't", "HELLO", "world", "x1", "_id", "$", "%", "#", "<", ">", "<|", "|>", "||"]


def case_variants(word: str) -> list[str]:
    return [word.lower(), word.upper(), word.capitalize(), "".join(
        c.upper() if i % 2 else c.lower() for i, c in enumerate(word))]


def main() -> None:
    rng = random.Random(20260127)
    corpus = list(BASE)
    # Contractions in every case, after letters, digits, spaces and punctuation.
    for c in CONTRACTIONS:
        for v in case_variants(c):
            corpus.append(f"we{v} 9{v} {v} ({v}) x{v}y {v}{v}")
    # Long digit strings (groups of 1..3 digits), with separators.
    for n in (1, 2, 3, 4, 5, 7, 10, 16, 31, 64):
        digits = "".join(str(rng.randrange(10)) for _ in range(n))
        corpus.append(f"{digits} x{digits} {digits}.{digits[::-1]} -{digits},")
    # Whitespace runs of every kind before words, digits, punctuation, newlines and the end.
    for ws in [" " * k for k in (1, 2, 3, 5, 8, 17)] + ["\t", "\t\t", " \t", "\t ", "\n", "\r\n", "\n ",
                                                           " \n", "\r\n\r\n", " \r\n ", "\n\n\n\t"]:
        for after in ("word", "123", "!?", "\n", "", "日本", "😀"):
            corpus.append(f"x{ws}{after}")
    # Random word salad (English-like) and random mixes of awkward pieces.
    for _ in range(60):
        n = rng.randrange(3, 40)
        corpus.append(" ".join(rng.choice(WORDS) for _ in range(n)) + rng.choice([".", "!", "?", "\n", ""]))
    for _ in range(120):
        n = rng.randrange(1, 30)
        corpus.append("".join(rng.choice(PIECES) for _ in range(n)))
    # Added tokens inside random text.
    for _ in range(40):
        parts = []
        for _ in range(rng.randrange(1, 8)):
            parts.append(rng.choice(PIECES + WORDS) if rng.random() < 0.6 else rng.choice(ADDED))
        corpus.append("".join(parts))
    # Long entries: many languages and code concatenated, repeated.
    corpus.append("\n\n".join(BASE) * 3)
    corpus.append(" ".join(LANG_SNIPPETS) * 5)
    corpus.append("".join(BASE[12:22]) * 8)
    corpus.append(" ".join(rng.choice(WORDS) for _ in range(3000)))
    corpus.append(" " * 300 + "x" + "\n" * 200 + "y" + "\t" * 100 + "z" + "a" * 500 + "1" * 200)
    corpus.append("😀" * 200 + "中文" * 200 + "é" * 100)
    out = Path(__file__).with_name("corpus.json")
    out.write_text(json.dumps(corpus, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(corpus)} texts, {sum(len(s.encode()) for s in corpus)} bytes to {out}")


if __name__ == "__main__":
    main()
