// Validates one `helm template` rendering of deploy/helm/quarry: every object against the Kubernetes schemas
// (strict on unknown keys, strict.mjs), then the chart's policies (policy checks below) against the case's
// expectations from cases.json.
//
//   node validate.mjs RENDERED.yaml CASE_NAME [--self-test]
//
// Exit 0 = no problem; otherwise every problem is printed and the exit status is 1.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { validateStrict } from './strict.mjs';
import { policyChecks } from './policy.mjs';

const [file, caseName, ...flags] = process.argv.slice(2);
if (!file || !caseName) {
  console.error('usage: node validate.mjs RENDERED.yaml CASE_NAME [--self-test]');
  process.exit(2);
}
const cases = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url), 'utf8'));
const c = cases.cases.find((x) => x.name === caseName);
if (!c) {
  console.error(`unknown case ${caseName}`);
  process.exit(2);
}

const problems = [];
const parsed = parseAllDocuments(readFileSync(file, 'utf8'));
const docs = [];
for (const d of parsed) {
  if (d.errors.length) problems.push(`YAML: ${d.errors.map((e) => e.message).join('; ')}`);
  const js = d.toJS();
  if (js !== null && js !== undefined) docs.push(js);
}
if (docs.length === 0) problems.push('no objects rendered');

for (const doc of docs) {
  const id = `${doc.kind}/${doc.metadata?.name}`;
  for (const p of await validateStrict(doc)) problems.push(`${id}: schema: ${p}`);
}
for (const p of policyChecks(docs, c.expect)) problems.push(`policy: ${p}`);
// Shell scripts carried in ConfigMaps must at least parse.
for (const cm of docs.filter((d) => d.kind === 'ConfigMap')) {
  for (const [k, v] of Object.entries(cm.data || {})) {
    if (!k.endsWith('.sh')) continue;
    try {
      execFileSync('sh', ['-n', '-c', v], { stdio: 'pipe' });
    } catch (e) {
      problems.push(`ConfigMap/${cm.metadata.name}: ${k} is not valid sh: ${String(e.stderr).trim()}`);
    }
  }
}

// The checks must be able to fail: break a copy of the objects in known ways and expect each to be caught.
if (flags.includes('--self-test')) {
  const broken = [
    ['unknown container key', (ds) => { pods(ds)[0].containers[0].imagePullPolicyy = 'Always'; }, /unknown field .*imagePullPolicyy/],
    ['wrong type', (ds) => { ds.find((d) => d.kind === 'Service').spec.ports[0].port = 'grpc'; }, /must be integer/],
    ['latest image', (ds) => { pods(ds)[0].containers[0].image = 'quarry/quarry-router:latest'; }, /latest/],
    ['missing readiness probe', (ds) => { delete pods(ds)[0].containers[0].readinessProbe; }, /readinessProbe/],
    ['selector mismatch', (ds) => { ds.find((d) => d.kind === 'StatefulSet').spec.selector.matchLabels['quarry/ep-group'] = '9'; }, /selector/],
    ['worker engine switched', (ds) => { const c = ds.find((d) => d.kind === 'StatefulSet').spec.template.spec.containers[0]; c.args = c.args.map((a) => a.startsWith('--device=') ? (a === '--device=cuda' ? '--device=cpu' : '--device=cuda') : a); }, /--device/],
    ['GPU limit removed', (ds) => { const s = ds.find((d) => d.kind === 'StatefulSet'); delete s.spec.template.spec.containers[0].resources.limits['nvidia.com/gpu']; }, /nvidia.com\/gpu/],
    ['headless Service hides not-ready ranks', (ds) => { ds.find((d) => d.kind === 'Service' && d.spec.clusterIP === 'None').spec.publishNotReadyAddresses = false; }, /publishNotReadyAddresses/],
    ['router misses a rank', (ds) => { const cm = ds.find((d) => d.kind === 'ConfigMap'); cm.data.QUARRY_ROUTER_WORKERS = cm.data.QUARRY_ROUTER_WORKERS.split(',').slice(1).join(','); }, /--workers/],
  ];
  for (const [what, breakIt, expected] of broken) {
    const copy = structuredClone(docs);
    breakIt(copy);
    const found = [];
    for (const doc of copy) for (const p of await validateStrict(doc)) found.push(p);
    found.push(...policyChecks(copy, c.expect));
    if (!found.some((p) => expected.test(p))) problems.push(`self-test: "${what}" was not detected (got: ${found.join(' | ') || 'nothing'})`);
  }
}

function pods(ds) {
  return ds.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet').map((d) => d.spec.template.spec);
}

if (problems.length) {
  console.error(`validate ${caseName}: ${problems.length} problem(s)`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
const kinds = {};
for (const d of docs) kinds[d.kind] = (kinds[d.kind] || 0) + 1;
console.log(`validate ${caseName}: ${docs.length} objects valid (${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ')})` +
            `${flags.includes('--self-test') ? '; self-test: every injected defect caught' : ''}`);
