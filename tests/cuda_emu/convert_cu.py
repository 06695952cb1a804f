#!/usr/bin/env python3
"""Quarry CUDA emulator (tests/cuda_emu): turns a CUDA source (.cu / .cuh) into C++ that the emulator's fake
CUDA headers compile. Only three constructs need rewriting; everything else (__global__, __device__,
__forceinline__, intrinsics, ...) is a macro or a function in tests/cuda_emu/include.

  kernel<<<grid, block[, smem[, stream]]>>>(args);
      -> ::emu::Launch("kernel", kernel, grid, block[, smem[, stream]])(args);
  __shared__ [__align__(N)] T name[D1][D2];           (inside a function)
      -> static ::emu::SharedVar<T[D1][D2], N> __emu_shared_name; auto& name = __emu_shared_name.Get("name");
  extern __shared__ [__align__(N)] T name[];
      -> T* const name = ::emu::DynamicShared<T, N>("T");
  __global__ void __launch_bounds__(A[, B]) Kernel(params) {
      -> __global__ void Kernel(params) { ::emu::CheckLaunchBounds(A[, B]);

Comments, string and character literals are never touched; line numbers are preserved (a #line directive
names the original file), so compiler errors and the emulator's diagnostics point at the .cu source. Anything
the converter does not understand is an error, never a silent pass-through.

usage: convert_cu.py INPUT OUTPUT [--name PATH-SHOWN-IN-DIAGNOSTICS]
"""

import argparse
import re
import sys


class ConvertError(Exception):
    pass


def code_mask(src):
    """mask[i] is True where src[i] is code (not inside a comment or a string / character literal)."""
    mask = [True] * len(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                mask[k] = False
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise ConvertError("unterminated /* comment")
            for k in range(i, j + 2):
                mask[k] = False
            i = j + 2
        elif c == 'R' and src.startswith('R"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', src[i:])
            if not m:
                raise ConvertError("malformed raw string literal")
            end = src.find(")" + m.group(1) + '"', i)
            if end < 0:
                raise ConvertError("unterminated raw string literal")
            end += len(m.group(1)) + 2
            for k in range(i, end):
                mask[k] = False
            i = end
        elif c in "\"'":
            # A ' between digits is a C++14 digit separator, not a character literal.
            if c == "'" and i > 0 and src[i - 1].isalnum() and i + 1 < n and src[i + 1].isalnum():
                i += 1
                continue
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\":
                    j += 1
                if j < n and src[j] == "\n":
                    raise ConvertError("unterminated literal at offset %d" % i)
                j += 1
            for k in range(i, min(j + 1, n)):
                mask[k] = False
            i = j + 1
        else:
            i += 1
    return mask


class Source:
    def __init__(self, text):
        self.text = text
        self.mask = code_mask(text)

    def line_of(self, pos):
        return self.text.count("\n", 0, pos) + 1

    def find_code(self, token, start=0):
        i = self.text.find(token, start)
        while i >= 0 and not all(self.mask[i:i + len(token)]):
            i = self.text.find(token, i + 1)
        return i

    def skip_ws(self, i):
        while i < len(self.text) and (self.text[i].isspace() or not self.mask[i]):
            i += 1
        return i

    def match_forward(self, i, open_ch, close_ch):
        """src[i] == open_ch; returns the index of the matching close_ch (brackets of all kinds balanced)."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        stack = []
        j = i
        while j < len(self.text):
            c = self.text[j]
            if self.mask[j]:
                if c in pairs:
                    stack.append(pairs[c])
                elif c in ")]}":
                    if not stack or stack.pop() != c:
                        raise ConvertError("unbalanced '%s' at line %d" % (c, self.line_of(j)))
                    if not stack:
                        if c != close_ch:
                            raise ConvertError("expected '%s' at line %d" % (close_ch, self.line_of(j)))
                        return j
            j += 1
        raise ConvertError("no '%s' matching line %d" % (close_ch, self.line_of(i)))

    def top_level_find(self, start, token):
        """First `token` at bracket depth 0 from `start` (the depth of () [] {})."""
        depth = 0
        j = start
        while j < len(self.text):
            if self.mask[j]:
                if self.text.startswith(token, j) and depth == 0:
                    return j
                c = self.text[j]
                if c in "([{":
                    depth += 1
                elif c in ")]}":
                    depth -= 1
                    if depth < 0:
                        raise ConvertError("unbalanced '%s' at line %d" % (c, self.line_of(j)))
            j += 1
        raise ConvertError("no '%s' after line %d" % (token, self.line_of(start)))

    def in_function(self, pos):
        """True when pos is inside braces other than namespace / extern "C" braces."""
        stack = []
        last_stmt = 0
        for j in range(pos):
            if not self.mask[j]:
                continue
            c = self.text[j]
            if c == "{":
                head = self.text[last_stmt:j]
                is_ns = re.search(r'\bnamespace\b[\w\s:]*$', head) or re.search(r'\bextern\s*"C"\s*$', head)
                stack.append(bool(is_ns))
                last_stmt = j + 1
            elif c == "}":
                if stack:
                    stack.pop()
                last_stmt = j + 1
            elif c == ";":
                last_stmt = j + 1
        return any(not ns for ns in stack)


def keep_newlines(original):
    return "\n" * original.count("\n")


def convert_launches(s, edits):
    pos = 0
    count = 0
    while True:
        i = s.find_code("<<<", pos)
        if i < 0:
            break
        text = s.text
        # The callee: identifier (with :: qualifiers) and optional template arguments, right before <<<.
        j = i
        while j > 0 and text[j - 1].isspace():
            j -= 1
        if j > 0 and text[j - 1] == ">":
            depth = 0
            k = j - 1
            while k >= 0:
                if s.mask[k]:
                    if text[k] == ">":
                        depth += 1
                    elif text[k] == "<":
                        depth -= 1
                        if depth == 0:
                            break
                k -= 1
            if k < 0:
                raise ConvertError("unbalanced template arguments before <<< at line %d" % s.line_of(i))
            j = k
        k = j
        while k > 0 and (text[k - 1].isalnum() or text[k - 1] in "_:"):
            k -= 1
        callee = text[k:i].strip()
        if not re.match(r"^(::)?[A-Za-z_]\w*(::[A-Za-z_]\w*)*\s*(<.*>)?$", callee, re.S):
            raise ConvertError("cannot parse the kernel name before <<< at line %d: '%s'" % (s.line_of(i), callee))
        end_cfg = s.top_level_find(i + 3, ">>>")
        config = text[i + 3:end_cfg]
        p = s.skip_ws(end_cfg + 3)
        if p >= len(text) or text[p] != "(":
            raise ConvertError("expected '(' after >>> at line %d" % s.line_of(end_cfg))
        close = s.match_forward(p, "(", ")")
        args = text[p + 1:close]
        name = re.sub(r"\s+", " ", callee).replace("\\", "\\\\").replace('"', '\\"')
        repl = '::emu::Launch("%s", %s, %s)(%s)' % (name, callee, config, args)
        # Whitespace between >>> and ( may hold newlines: keep them.
        repl += keep_newlines(text[end_cfg + 3:p])
        edits.append((k, close + 1, repl))
        count += 1
        pos = close + 1
    return count


SHARED_ALIGN = re.compile(r"\b(?:__align__|alignas)\s*\(([^()]*)\)")


def convert_shared(s, edits):
    pos = 0
    count = 0
    text = s.text
    while True:
        i = s.find_code("__shared__", pos)
        if i < 0:
            break
        if (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")) or \
           (i + 10 < len(text) and (text[i + 10].isalnum() or text[i + 10] == "_")):
            pos = i + 10
            continue
        # Declaration start: include a preceding `extern` / `static`.
        start = i
        while True:
            m = re.search(r"\b(extern|static)\s+$", text[:start])
            if not m:
                break
            start = m.start(1)
        end = s.top_level_find(i, ";")
        decl = text[start:end]
        line = s.line_of(i)
        if not s.in_function(i):
            raise ConvertError("line %d: __shared__ outside a function is not supported by the emulator" % line)
        body = decl
        is_extern = re.match(r"\s*extern\b", body) is not None
        body = re.sub(r"\b(extern|static|__shared__|volatile)\b", " ", body)
        align = "0"
        am = SHARED_ALIGN.search(body)
        if am:
            align = am.group(1).strip()
            body = SHARED_ALIGN.sub(" ", body)
        body = body.strip()
        if "=" in body or "{" in body:
            raise ConvertError("line %d: __shared__ variables cannot have initializers: %s" % (line, decl.strip()))
        dm = re.search(r"((?:\s*\[[^\[\]]*\])*)\s*$", body)
        dims = re.sub(r"\]\s*\[", "][", dm.group(1).strip()) if dm.group(1) else ""
        head = body[:dm.start(1)].rstrip() if dm.group(1) else body
        nm = re.search(r"([A-Za-z_]\w*)$", head)
        if not nm:
            raise ConvertError("line %d: cannot find the variable name in: %s" % (line, decl.strip()))
        name = nm.group(1)
        typ = head[:nm.start(1)].strip()
        angle = 0
        for c in typ:
            angle += c == "<"
            angle -= c == ">"
            if c == "," and angle == 0:
                raise ConvertError("line %d: declare one __shared__ variable per statement: %s" % (line, decl.strip()))
        if not typ:
            raise ConvertError("line %d: cannot find the type in: %s" % (line, decl.strip()))
        if is_extern:
            if dims != "[]":
                raise ConvertError("line %d: extern __shared__ must be an unsized array: %s" % (line, decl.strip()))
            repl = '%s* const %s = ::emu::DynamicShared<%s, %s>("%s")' % (typ, name, typ, align, typ)
        else:
            if "[]" in dims:
                raise ConvertError("line %d: unsized __shared__ array without extern: %s" % (line, decl.strip()))
            var = "__emu_shared_" + name
            repl = 'static ::emu::SharedVar<%s%s, %s> %s; auto& %s = %s.Get("%s")' % (
                typ, dims, align, var, name, var, name)
        edits.append((start, end, repl + keep_newlines(decl)))
        count += 1
        pos = end
    return count


def convert_launch_bounds(s, edits):
    pos = 0
    count = 0
    text = s.text
    while True:
        i = s.find_code("__launch_bounds__", pos)
        if i < 0:
            break
        p = s.skip_ws(i + len("__launch_bounds__"))
        if p >= len(text) or text[p] != "(":
            raise ConvertError("line %d: expected '(' after __launch_bounds__" % s.line_of(i))
        close = s.match_forward(p, "(", ")")
        bounds = text[p + 1:close].strip()
        q = s.skip_ws(close + 1)
        m = re.match(r"[A-Za-z_]\w*", text[q:])
        if not m:
            raise ConvertError("line %d: expected the kernel name after __launch_bounds__(...)" % s.line_of(i))
        q = s.skip_ws(q + m.end())
        if text[q] != "(":
            raise ConvertError("line %d: expected the parameter list of %s" % (s.line_of(i), m.group(0)))
        q = s.skip_ws(s.match_forward(q, "(", ")") + 1)
        edits.append((i, close + 1, keep_newlines(text[i:close + 1])))
        if text[q] == "{":
            edits.append((q + 1, q + 1, " ::emu::CheckLaunchBounds(%s);" % bounds))
        elif text[q] != ";":
            raise ConvertError("line %d: expected '{' or ';' after the parameters of %s" % (s.line_of(i), m.group(0)))
        count += 1
        pos = close + 1
    return count


def convert(text):
    s = Source(text)
    edits = []
    launches = convert_launches(s, edits)
    shared = convert_shared(s, edits)
    bounds = convert_launch_bounds(s, edits)
    edits.sort(key=lambda e: (e[0], e[1]))
    for a, b in zip(edits, edits[1:]):
        if b[0] < a[1]:
            raise ConvertError("overlapping rewrites at line %d" % s.line_of(b[0]))
    out = text
    for start, end, repl in reversed(edits):
        out = out[:start] + repl + out[end:]
    check = Source(out)
    for token in ("<<<", "__shared__", "__launch_bounds__"):
        j = check.find_code(token)
        if j >= 0:
            raise ConvertError("line %d: '%s' left after conversion" % (check.line_of(j), token))
    if out.count("\n") != text.count("\n"):
        raise ConvertError("internal error: the line count changed")
    return out, launches, shared, bounds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--name", help="file name shown in diagnostics (default: INPUT)")
    args = ap.parse_args()
    name = args.name or args.input
    with open(args.input, encoding="utf-8") as f:
        text = f.read()
    try:
        out, launches, shared, bounds = convert(text)
    except ConvertError as e:
        sys.stderr.write("%s: error: %s\n" % (name, e))
        return 1
    header = ("// Generated from %s by tests/cuda_emu/convert_cu.py for the CUDA emulator: do not edit.\n"
              "// %d launches, %d __shared__ declarations, %d __launch_bounds__ rewritten.\n"
              "#include <cuda_runtime.h>  // nvcc includes it implicitly\n"
              '#line 1 "%s"\n') % (name, launches, shared, bounds, name)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(header + out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
