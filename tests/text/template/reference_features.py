"""Small feature templates for the differential test: name -> (source, contexts(rng) -> list of variable dicts).

Each template exercises one area of the jinja2 subset (whitespace control, loops, macros, filters, tests,
slicing, methods, arithmetic, tojson, errors). Contexts are built from the seeded rng of render_reference.py.
"""

WORDS = ["alpha", "Beta", "gamma delta", "", "  pad  ", "ünï", "x,y,z", "CamelCase", "a-b c(d"]
# Case mapping (lower/upper/title/capitalize) is ASCII-only in Quarry: keep those inputs ASCII.
ASCII_WORDS = [w for w in WORDS if w.isascii()]
NUMS = [0, 1, -3, 7, 2.5, -0.5, 1e-05, 1e16, 0.1, 100]


def words(rng, pool=WORDS):
    return [{"items": rng.sample(pool, rng.randint(0, len(pool))), "n": rng.choice(NUMS),
             "s": rng.choice(pool)} for _ in range(4)]


def ascii_words(rng):
    return words(rng, ASCII_WORDS)


def one(**kw):
    return lambda rng: [dict(kw)]


def records(rng):
    out = []
    for _ in range(4):
        recs = [{"name": rng.choice(WORDS), "age": rng.randint(0, 90), "ok": rng.random() < 0.5}
                for _ in range(rng.randint(0, 5))]
        out.append({"recs": recs, "d": {"k1": 1, "k2": [1, 2], "items": "shadow", "nested": {"x": None}}})
    return out


FEATURE_TEMPLATES = {
    "ws_control": (
        "A\n  {% if true %}\n    B {{ x }}  \n  {%- endif %}\n{# comment #}\n  {#- c2 -#}  C\n"
        "{%+ if true %}keep{% endif +%}\n  {{- 'D' -}}  \n E {% raw %}{{ raw }} {% x %}{% endraw %}\n"
        "\t{% for i in [1,2] %}\n\t{{ i }}\n\t{% endfor %}\nend\n",
        one(x="X"),
    ),
    "ws_crlf": ("line1\r\n  {% if a %}\r\n  yes\r\n  {% endif %}\r\nlast\r\n\r\n", one(a=True)),
    "loop_vars": (
        "{% for x in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/"
        "{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nextitem }}/"
        "{{ loop.cycle('a', 'b', 'c') }}:{{ x }};{% else %}empty{% endfor %}"
        "{% for x in items if x %}[{{ loop.index }}{{ x }}]{% endfor %}",
        words,
    ),
    "loop_control": (
        "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}"
        "{{ i }},{% endfor %}|{% for a, b in pairs %}{{ a }}={{ b }};{% endfor %}"
        "|{% for k, v in d.items() %}{{ k }}:{{ v }} {% endfor %}|{% for k in d %}{{ k }}{% endfor %}"
        "|{% for c in 'hé!' %}<{{ c }}>{% endfor %}|{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}",
        one(pairs=[[1, "a"], [2, "b"]], d={"z": 1, "a": 2}),
    ),
    "loop_scoping": (
        "{% for i in range(3) %}[{{ x }}]{% if i == 1 %}{% set x = 5 %}{% endif %}{% endfor %}"
        "{% set x = 1 %}{% for i in range(3) %}[{{ x }}]{% set x = i + 10 %}{% endfor %}{{ x }}"
        "{% for i in [] %}{% else %}{{ i }}|{{ loop is defined }}{% endfor %}"
        "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }}{% endfor %}{{ loop.index }}{% endfor %}"
        "{% macro m() %}{{ x }}{% endmacro %}{% set x = 'late' %}{{ m() }}",
        one(),
    ),
    "namespace_set": (
        "{% set ns = namespace(total=0, names=[]) %}{% for r in recs %}{% set ns.total = ns.total + r.age %}"
        "{% set ns.names = ns.names + [r.name] %}{% endfor %}{{ ns.total }} {{ ns.names }}"
        "{% set a, b = 1, 'two' %} {{ a }}{{ b }}{% set blk %}inside {{ a }}{% endset %} [{{ blk }}]"
        "{% with q = 5 %}{{ q * 2 }}{% endwith %}{{ q }}",
        records,
    ),
    "macros": (
        "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}"
        "{{ greet('A') }} {{ greet('B', 'Hi') }} {{ greet(name='C', punct='?') }} {{ greet() }}"
        "{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %} {{ rec(5) }}"
        "{% macro outer(x) %}[{% for i in range(x) %}{{ greet(i, punct='') }}{% endfor %}]{% endmacro %}{{ outer(2) }}",
        one(),
    ),
    "filters_str": (
        "{{ s|trim }}|{{ s|length }}|{{ s|lower }}|{{ s|upper }}|{{ s|capitalize }}|{{ s|title }}|"
        "{{ s|replace('a', 'A') }}|{{ s|replace('a', '', 1) }}|{{ items|join(', ') }}|{{ items|join }}|"
        "{{ items|length }}|{{ items|first }}|{{ items|last }}|{{ n|string }}|{{ n|int }}|{{ n|float }}|"
        "{{ s|default('dflt') }}|{{ missing|default('dflt') }}|{{ ''|d('E', true) }}|{{ items|list }}|"
        "{{ s|reverse }}|{{ items|reverse|list }}|{{ items|sort }}|{{ items|unique|list }}|{{ n|abs }}|"
        "{{ s|trim('p ') }}|{{ '3.7'|float }}|{{ '42'|int + 1 }}|{{ 'x'|int(5) }}|{{ s|indent(2, true) }}|"
        "{{ 'a\nb\n\nc'|indent }}|{{ '<&>'|e }}|{{ items|min }}|{{ items|max }}|{{ 2.567|round(2) }}|{{ 2.5|round }}",
        ascii_words,
    ),
    "filters_seq": (
        "{{ recs|selectattr('ok')|map(attribute='name')|join(',') }}|{{ recs|rejectattr('ok')|list|length }}|"
        "{{ recs|map(attribute='age')|sum }}|{{ recs|selectattr('age', 'gt', 30)|list|tojson }}|"
        "{{ recs|sort(attribute='age')|map(attribute='age')|list }}|{{ [1, 2, 3, 4]|select('odd')|list }}|"
        "{{ ['a', 'B']|map('upper')|list }}|{{ d|items|list }}|{{ d.keys()|list }}|"
        "{{ d.values()|list|length }}|{{ d.get('k1') }}|{{ d.get('zz', 'no') }}|{{ d.get('zz') }}|{{ d['items'] }}",
        records,
    ),
    "tests": (
        "{% for v in values %}{{ v is defined }}{{ v is none }}{{ v is string }}{{ v is mapping }}"
        "{{ v is iterable }}{{ v is sequence }}{{ v is number }}{{ v is integer }}{{ v is float }}"
        "{{ v is boolean }}{{ v is true }}{{ v is false }} {% endfor %}{{ nope is undefined }}"
        "{{ nope is defined }}{{ 4 is divisibleby 2 }}{{ 3 is even }}{{ 'a' in 'cat' }}{{ 2 not in [1, 3] }}"
        "{{ 'k' in {'k': 1} }}{{ 1 is eq 1.0 }}{{ 'abc' is lower }}{{ 2 is in [1, 2] }}{{ nope is not defined }}",
        one(values=[None, True, 0, 1.5, "s", [1], {"a": 1}, ""]),
    ),
    "slicing": (
        "{{ l[0] }}{{ l[-1] }}{{ l[1:3] }}{{ l[:-2] }}{{ l[::2] }}{{ l[::-1] }}{{ l[-3:] }}{{ l[5:1:-2] }}"
        "{{ s[0] }}{{ s[-1] }}{{ s[1:4] }}{{ s[::-1] }}{{ s[10:] }}{{ l[100] is defined }}{{ l.1 }}"
        "{{ (1, 2)[1] }}{{ d['a'] }}{{ d.a }}{{ d['missing'] is defined }}",
        one(l=[0, 1, 2, 3, 4, 5, 6], s="héllo wörld", d={"a": "A"}),
    ),
    "methods": (
        "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split() }}|{{ s.split(',') }}|"
        "{{ s.split(' ', 1) }}|{{ s.startswith('a') }}|{{ s.endswith(('x', 'e')) }}|{{ s.upper() }}|"
        "{{ s.lower() }}|{{ s.replace(' ', '_') }}|{{ s.title() }}|{{ '-'.join(items) }}|{{ s.find('a') }}|"
        "{{ s.count('a') }}|{{ s.strip(' pa') }}|{{ s.capitalize() }}",
        ascii_words,
    ),
    "arith": (
        "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} "
        "{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1.5e-7 }} {{ 10 / 4 }} {{ 4 / 2 }} "
        "{{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'a' ~ 1 ~ none ~ true }} {{ [1, 2] + [3] }} {{ -n }} {{ n * 2 }} "
        "{{ 3 > 2 > 1 }} {{ 1 < 2 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ true + 1 }} "
        "{{ 'y' if n else 'n' }} {{ 'only' if false }}! {{ not n }} {{ n and 'x' }} {{ n or 'z' }} {{ 1.0 }} "
        "{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 1_000 }} {{ 3.0 * 2 }}",
        lambda rng: [{"n": v} for v in [0, 3, -2.5, 1e-05]],
    ),
    "literals": (
        "{{ 'a\\'b' }}{{ \"c\\\"d\" }}{{ 'tab\\tnl\\nbs\\\\' }}{{ '\\x41\\u00e9' }}{{ 'adj' 'acent' }}"
        "{{ {'k': [1, 2.0, none, true, 'v']} }}{{ [] }}{{ {} }}{{ (1,) }}{{ () }}{{ 'q\"' }}{{ \"it's\" }}",
        one(),
    ),
    "tojson": (
        "{{ v|tojson }}\n{{ v|tojson(indent=2) }}\n{{ v|tojson(sort_keys=true) }}\n{{ 'nan'|float|tojson }}"
        "{{ 'inf'|float|tojson }}{{ none|tojson }}{{ (1, 'x')|tojson }}",
        lambda rng: [{"v": v} for v in [
            {"b": 1, "a": [1.0, 1e-05, 1e16, 0.1, -0.0, 123456789012], "s": "é\"\\\n\t\x01\x1f<>&'", "e": [], "o": {}},
            [True, False, None, "😀", 2**53 + 1, 1e300, 5e-324], "plain", 3.14159]],
    ),
    "undefined": (
        "[{{ nope }}][{{ d.missing }}][{{ d['x'] }}][{{ nope|length }}][{{ nope ~ 'a' }}][{{ nope|default(1) }}]"
        "[{% for x in nope %}{{ x }}{% endfor %}][{{ nope is iterable }}][{{ d.missing is defined }}]"
        "[{{ nope|string }}][{{ nope|lower }}][{{ nope == nope }}][{{ not nope }}]",
        one(d={"x": 1}),
    ),
    "err_raise": ("{% if x %}{{ raise_exception('bad input: ' ~ x) }}{% endif %}ok", lambda rng: [{"x": 1}, {"x": 0}]),
    "err_undefined_attr": ("{{ nope.attr }}", one()),
    "err_type": ("{{ 'a' + 1 }}", one()),
    "err_mutation": ("{% set l = [1] %}{{ l.append(2) }}", one()),
    "err_div_zero": ("{{ 1 / 0 }}", one()),
    "err_not_iterable": ("{% for x in 5 %}{% endfor %}", one()),
    "err_syntax": ("{% if x %}unterminated", one()),
    "err_unknown_filter": ("{{ x|nosuchfilter }}", one(x=1)),
    "print_values": (
        "{{ none }} {{ true }} {{ 1.5 }} {{ 100000000000000000000.0 }} {{ l }} {{ d }} {{ 'x' }} {{ (1, 'a') }} "
        "{{ ns_val }}",
        one(l=[1, "a", None, True, 1.0, "it's", {"k": [2]}], d={"a": 1, "b": "c'd\"e"}, ns_val=-0.0),
    ),
}
