// Static checks of deploy/docker/Dockerfile.* (no Docker engine needed): instruction syntax, pinned base images,
// stage references, COPY sources present in the build context (the repository root) and not dockerignored,
// `sh -n` on every RUN, apt hygiene, a non-root final USER, exec-form ENTRYPOINT, CMake targets that exist.
//   node deploy/docker/lint.mjs   (exit 1 on any problem)
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const INSTRUCTIONS = new Set(['FROM', 'ARG', 'RUN', 'COPY', 'ADD', 'ENV', 'WORKDIR', 'USER', 'ENTRYPOINT', 'CMD', 'LABEL',
  'EXPOSE', 'HEALTHCHECK', 'SHELL', 'STOPSIGNAL', 'VOLUME', 'ONBUILD']);
const problems = [];

function parse(text) {
  const out = [];
  let cur = null;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\s+$/, '');
    if (cur === null) {
      if (/^\s*(#|$)/.test(line)) return;
      cur = { line: i + 1, text: '' };
    } else if (/^\s*#/.test(line)) return;  // comment inside a continuation
    const cont = line.endsWith('\\');
    cur.text += (cur.text ? ' ' : '') + (cont ? line.slice(0, -1) : line).trim();
    if (!cont) {
      const m = cur.text.match(/^([A-Za-z]+)\s+(.*)$/);
      out.push({ line: cur.line, op: m ? m[1].toUpperCase() : cur.text, args: m ? m[2] : '', raw: cur.text });
      cur = null;
    }
  });
  if (cur) out.push({ line: cur.line, op: 'UNTERMINATED', args: cur.text });
  return out;
}

function cmakeTargets() {
  const targets = new Set();
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (!/^(\.|build|node_modules|models)/.test(e.name)) walk(join(d, e.name));
      } else if (e.name === 'CMakeLists.txt') {
        for (const [, t] of readFileSync(join(d, e.name), 'utf8').matchAll(/add_executable\(\s*([A-Za-z0-9_.+-]+)/g)) targets.add(t);
      }
    }
  };
  walk(root);
  return targets;
}

function ignored(patterns, path) {
  return patterns.some((p) => {
    const re = new RegExp('^' + p.replace(/\/$/, '').replace(/[.+^${}()|[\]]/g, '\\$&').replace(/\*\*\//g, '(.*/)?').replace(/\*/g, '[^/]*') + '(/|$)');
    return re.test(path);
  });
}

const targets = cmakeTargets();
const files = readdirSync(here).filter((f) => /^Dockerfile\.[a-z]+$/.test(f));
if (files.length === 0) problems.push('no Dockerfile.* in deploy/docker');
for (const f of files) {
  const where = (n) => `${f}:${n.line}`;
  const text = readFileSync(join(here, f), 'utf8');
  const ins = parse(text);
  const ignoreFile = join(here, `${f}.dockerignore`);
  const ignore = existsSync(ignoreFile)
    ? readFileSync(ignoreFile, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    : (problems.push(`${f}: no ${f}.dockerignore (the whole repository, build trees included, would be sent)`), []);
  const args = {};
  const stages = [];
  let sawFrom = false;
  for (const n of ins) {
    if (!INSTRUCTIONS.has(n.op)) { problems.push(`${where(n)}: unknown instruction ${n.op}`); continue; }
    if (n.op === 'ARG') {
      const m = n.args.match(/^([A-Za-z_][A-Za-z0-9_]*)(=(.*))?$/);
      if (!m) problems.push(`${where(n)}: malformed ARG`);
      else if (!sawFrom) args[m[1]] = m[3];
    } else if (n.op === 'FROM') {
      sawFrom = true;
      const m = n.args.match(/^(--platform=\S+\s+)?(\S+)(\s+AS\s+([a-z0-9_-]+))?$/i);
      if (!m) { problems.push(`${where(n)}: malformed FROM`); continue; }
      const image = m[2].replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, v) => args[v] ?? '');
      if (stages.includes(image)) { stages.push(m[4]); continue; }  // FROM an earlier stage
      const digest = /@sha256:[a-f0-9]{64}$/.test(image);
      const tag = image.split('/').pop().split('@')[0].split(':')[1];
      if (!digest && (!tag || tag === 'latest' || !/[0-9]/.test(tag))) problems.push(`${where(n)}: base image "${image}" is not pinned to a versioned tag or digest`);
      stages.push(m[4]);
    } else if (n.op === 'RUN') {
      const body = n.args.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, '"$$$1"');
      try {
        execFileSync('sh', ['-n', '-c', n.args], { stdio: 'pipe' });
      } catch (e) {
        problems.push(`${where(n)}: RUN is not valid sh: ${String(e.stderr).trim()} (${body.slice(0, 80)}...)`);
      }
      if (/apt-get install/.test(n.args) && !/--no-install-recommends/.test(n.args)) problems.push(`${where(n)}: apt-get install without --no-install-recommends`);
      if (/apt-get update/.test(n.args) && !/rm -rf \/var\/lib\/apt\/lists/.test(n.args)) problems.push(`${where(n)}: apt-get update without removing /var/lib/apt/lists in the same layer`);
      if (/apt-get install/.test(n.args) && !/apt-get update/.test(n.args)) problems.push(`${where(n)}: apt-get install without apt-get update in the same RUN`);
      for (const [, list] of n.args.matchAll(/--target\s+((?:[A-Za-z0-9_.+-]+\s*)+)/g)) {
        for (const t of list.trim().split(/\s+/)) if (!/^&&$/.test(t) && !targets.has(t)) problems.push(`${where(n)}: CMake target ${t} does not exist (add_executable)`);
      }
    } else if (n.op === 'COPY' || n.op === 'ADD') {
      if (n.op === 'ADD') problems.push(`${where(n)}: use COPY (ADD fetches URLs and unpacks archives)`);
      const parts = n.args.split(/\s+/);
      const from = parts.find((p) => p.startsWith('--from='));
      const paths = parts.filter((p) => !p.startsWith('--'));
      if (paths.length < 2) { problems.push(`${where(n)}: COPY needs a source and a destination`); continue; }
      if (from) {
        const s = from.slice('--from='.length);
        if (!stages.includes(s)) problems.push(`${where(n)}: --from=${s} names no earlier stage`);
        continue;
      }
      for (const src of paths.slice(0, -1)) {
        const rel = src.replace(/^\.\/?/, '');
        if (rel && !existsSync(join(root, rel))) problems.push(`${where(n)}: COPY source ${src} does not exist in the build context (repository root)`);
        if (rel && ignored(ignore, rel)) problems.push(`${where(n)}: COPY source ${src} is excluded by ${f}.dockerignore`);
      }
    } else if (n.op === 'ENTRYPOINT' || n.op === 'CMD') {
      try {
        const v = JSON.parse(n.args);
        if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error('not a string array');
      } catch (e) {
        problems.push(`${where(n)}: ${n.op} must be exec form (a JSON string array): ${e.message}`);
      }
    } else if (n.op === 'UNTERMINATED') {
      problems.push(`${where(n)}: line continuation runs off the end of the file`);
    }
  }
  if (stages.length < 2) problems.push(`${f}: expected a multi-stage build (build + runtime), found ${stages.length} stage(s)`);
  const lastFrom = ins.map((n) => n.op).lastIndexOf('FROM');
  const final = ins.slice(lastFrom);
  const user = final.filter((n) => n.op === 'USER').pop();
  if (!user) problems.push(`${f}: the final stage has no USER (it would run as root)`);
  else if (/^(0|root)(:|$)/.test(user.args.trim())) problems.push(`${where(user)}: the final stage runs as root`);
  if (!final.some((n) => n.op === 'ENTRYPOINT')) problems.push(`${f}: the final stage has no ENTRYPOINT`);
  // The chart runs the images as uid 10001 with /usr/local/bin/quarry-<component>.
  const component = f.split('.')[1];
  if (!final.some((n) => n.op === 'ENTRYPOINT' && n.args.includes(`/usr/local/bin/quarry-${component}`))) {
    problems.push(`${f}: ENTRYPOINT is not /usr/local/bin/quarry-${component} (the Helm chart runs that path)`);
  }
  if (user && !/^10001(:|$)/.test(user.args.trim())) problems.push(`${where(user)}: USER is not 10001 (the chart's runAsUser)`);
}
for (const s of readdirSync(here).filter((x) => x.endsWith('.sh'))) {
  try {
    execFileSync('sh', ['-n', join(here, s)], { stdio: 'pipe' });
  } catch (e) {
    problems.push(`${s}: not valid sh: ${String(e.stderr).trim()}`);
  }
}
if (problems.length) {
  console.error(`docker lint: ${problems.length} problem(s)`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
console.log(`docker lint: ${files.join(', ')} ok (syntax, pinned bases, stages, COPY sources, sh -n, apt, non-root USER, entrypoint, CMake targets)`);
