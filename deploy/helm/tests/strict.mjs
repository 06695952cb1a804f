// Kubernetes schema validation of rendered objects with kubernetes-models, strict on unknown keys.
//
// kubernetes-models compiles the upstream OpenAPI schemas into ajv validators; those schemas allow unknown
// fields, so a misspelled key would pass. Strict mode (kubeconform's -strict): the validator runs on a
// tracing Proxy of the object; a key of a plain object that the validator never read is not in the schema.
// Objects whose keys the validator enumerated (maps such as labels, resources.limits) accept any key.

const MODELS = {
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/Service': 'kubernetes-models/v1/Service',
  'v1/ServiceAccount': 'kubernetes-models/v1/ServiceAccount',
  'v1/PersistentVolumeClaim': 'kubernetes-models/v1/PersistentVolumeClaim',
  'v1/Pod': 'kubernetes-models/v1/Pod',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'apps/v1/StatefulSet': 'kubernetes-models/apps/v1/StatefulSet',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'autoscaling/v2/HorizontalPodAutoscaler': 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
  'monitoring.coreos.com/v1/ServiceMonitor':
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
};

async function loadModel(apiVersion, kind) {
  const path = MODELS[`${apiVersion}/${kind}`];
  if (!path) return null;
  const mod = await import(path);
  return mod[kind];
}

// Wraps `root` in Proxies that record, per plain object, which keys were read and whether its keys were listed.
function trace(root) {
  const info = new Map();
  const proxies = new WeakMap();
  const wrap = (t) => {
    if (t === null || typeof t !== 'object') return t;
    if (proxies.has(t)) return proxies.get(t);
    const rec = { read: new Set(), listed: false };
    info.set(t, rec);
    const p = new Proxy(t, {
      get(target, key) {
        if (typeof key === 'string') rec.read.add(key);
        return wrap(Reflect.get(target, key));
      },
      has(target, key) {
        if (typeof key === 'string') rec.read.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        rec.listed = true;
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(t, p);
    return p;
  };
  return { proxy: wrap(root), info };
}

function unknownKeys(doc, info) {
  const out = [];
  const walk = (v, path) => {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${path}[${i}]`));
      return;
    }
    const rec = info.get(v);
    if (!rec) return;  // never reached: its parent key is reported, or the schema keeps it opaque
    for (const k of Object.keys(v)) {
      if (!rec.listed && !rec.read.has(k)) out.push(`${path}.${k}`);
      else walk(v[k], `${path}.${k}`);
    }
  };
  walk(doc, '');
  return out;
}

function formatErrors(errors) {
  return (errors || []).map((e) => `${e.instancePath || '/'} ${e.message || e.keyword} ${JSON.stringify(e.params)}`);
}

// Returns a list of problems (empty = valid and no unknown keys).
export async function validateStrict(doc) {
  const Model = await loadModel(doc.apiVersion, doc.kind);
  if (!Model) return [`no schema for ${doc.apiVersion}/${doc.kind} (add it to MODELS in strict.mjs)`];
  const copy = structuredClone(doc);
  const { proxy, info } = trace(copy);
  const problems = [];
  try {
    Model.prototype.validate.call(proxy);
  } catch (e) {
    const lines = formatErrors(e.errors);
    problems.push(...(lines.length ? lines : [String(e.message || e)]));
  }
  for (const k of unknownKeys(copy, info)) problems.push(`unknown field ${k}`);
  return problems;
}
