// Policy checks on the rendered objects of deploy/helm/quarry: what Kubernetes schemas cannot see (references
// between objects, probes, GPU limits, the expert-parallel wiring) and the expectations of a cases.json entry.
// policyChecks(docs, expect) returns a list of problems.

const CLUSTER_DOMAIN = 'cluster.local';
const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const subset = (sel, labels) => Object.entries(sel || {}).every(([k, v]) => labels?.[k] === v);
const same = (a, b) => JSON.stringify(Object.entries(a || {}).sort()) === JSON.stringify(Object.entries(b || {}).sort());

export function policyChecks(docs, expect) {
  const out = [];
  const bad = (msg) => out.push(msg);
  const of = (kind) => docs.filter((d) => d.kind === kind);
  const id = (d) => `${d.kind}/${d.metadata?.name}`;
  const workloads = docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet');
  const configMaps = new Map(of('ConfigMap').map((d) => [d.metadata.name, d]));
  const services = of('Service');
  const statefulSets = of('StatefulSet');
  const deployments = of('Deployment');

  // --- every object: names, namespace, standard labels
  for (const d of docs) {
    const name = d.metadata?.name || '';
    const re = d.kind === 'Service' ? DNS_LABEL : DNS_SUBDOMAIN;
    if (!re.test(name) || name.length > (d.kind === 'Service' ? 63 : 253)) bad(`${id(d)}: invalid name`);
    if (!d.metadata?.namespace) bad(`${id(d)}: no metadata.namespace`);
    for (const l of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/managed-by']) {
      if (!d.metadata?.labels?.[l]) bad(`${id(d)}: label ${l} missing`);
    }
  }
  // StatefulSet pods get a controller-revision-hash label "<name>-<10 chars>" that must fit 63 characters.
  for (const s of statefulSets) if (s.metadata.name.length > 52) bad(`${id(s)}: name longer than 52 characters`);

  // Resolves a container's env var to a literal value (value or configMapKeyRef), or undefined.
  const envValue = (container, name) => {
    const e = (container.env || []).find((x) => x.name === name);
    if (!e) return undefined;
    if (e.value !== undefined) return e.value;
    const ref = e.valueFrom?.configMapKeyRef;
    if (ref) return configMaps.get(ref.name)?.data?.[ref.key];
    return undefined;
  };
  // Value of a --flag=$(VAR) argument after Kubernetes' $(VAR) expansion.
  const argValue = (container, flag) => {
    const a = (container.args || []).find((x) => x.startsWith(`${flag}=`));
    if (a === undefined) return undefined;
    return a.slice(flag.length + 1).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, v) => envValue(container, v) ?? `$(${v})`);
  };

  // --- workloads: selectors, images, probes, resources, env and volume references, termination grace
  for (const w of workloads) {
    const tpl = w.spec.template;
    const spec = tpl.spec;
    const labels = tpl.metadata?.labels || {};
    if (!w.spec.selector?.matchLabels || Object.keys(w.spec.selector.matchLabels).length === 0) bad(`${id(w)}: empty selector`);
    if (!subset(w.spec.selector?.matchLabels, labels)) bad(`${id(w)}: selector does not match the pod template labels`);
    if (!tpl.metadata?.annotations?.['checksum/config']) bad(`${id(w)}: no checksum/config annotation (config changes would not roll the pods)`);
    const sa = spec.serviceAccountName;
    if (sa && sa !== 'default' && !of('ServiceAccount').some((s) => s.metadata.name === sa)) bad(`${id(w)}: ServiceAccount ${sa} not rendered`);
    const volumes = new Map((spec.volumes || []).map((v) => [v.name, v]));
    for (const c of [...(spec.initContainers || []), ...spec.containers]) {
      const cid = `${id(w)} container ${c.name}`;
      const image = c.image || '';
      const digest = image.includes('@sha256:');
      const tag = image.split('/').pop().split('@')[0].split(':')[1];
      if (!digest && !tag) bad(`${cid}: image ${image} has neither tag nor digest`);
      if (tag === 'latest') bad(`${cid}: image ${image} uses the latest tag`);
      if (!c.imagePullPolicy) bad(`${cid}: no imagePullPolicy`);
      for (const m of c.volumeMounts || []) if (!volumes.has(m.name)) bad(`${cid}: mounts undefined volume ${m.name}`);
      for (const e of c.env || []) {
        const ref = e.valueFrom?.configMapKeyRef;
        if (ref && !ref.optional && configMaps.get(ref.name)?.data?.[ref.key] === undefined) {
          bad(`${cid}: env ${e.name} refers to missing ConfigMap key ${ref.name}/${ref.key}`);
        }
      }
      const defined = new Set((c.env || []).map((e) => e.name));
      for (const a of [...(c.args || []), ...(c.command || [])]) {
        for (const [, v] of a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) if (!defined.has(v)) bad(`${cid}: $(${v}) is not defined in env`);
      }
      if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory) bad(`${cid}: no cpu/memory requests`);
      if (!c.resources?.limits?.memory) bad(`${cid}: no memory limit`);
    }
    for (const c of spec.containers) {
      const cid = `${id(w)} container ${c.name}`;
      const grpcPort = (c.ports || []).find((p) => p.name === 'grpc')?.containerPort;
      if (!grpcPort) bad(`${cid}: no port named grpc`);
      for (const [probe, service] of [['startupProbe', 'readiness'], ['readinessProbe', 'readiness'], ['livenessProbe', 'liveness']]) {
        const p = c[probe];
        if (!p?.grpc) bad(`${cid}: ${probe} is not a gRPC probe`);
        else {
          if (p.grpc.port !== grpcPort) bad(`${cid}: ${probe} probes port ${p.grpc.port}, not the grpc port ${grpcPort}`);
          if (p.grpc.service !== service) bad(`${cid}: ${probe} checks service "${p.grpc.service}", expected "${service}"`);
        }
      }
      const ports = (c.ports || []).map((p) => p.containerPort);
      if (new Set(ports).size !== ports.length) bad(`${cid}: duplicate container ports`);
      // terminationGracePeriodSeconds must cover preStop + drain grace + shutdown.
      const drain = Number(argValue(c, '--drain-grace-s'));
      const preStop = Number(c.lifecycle?.preStop?.exec?.command?.find((x) => /^[0-9]+$/.test(x)) || 0);
      const tgps = spec.terminationGracePeriodSeconds;
      if (!Number.isFinite(drain)) bad(`${cid}: --drain-grace-s does not resolve to a number`);
      else if (!(tgps > preStop + drain)) bad(`${cid}: terminationGracePeriodSeconds ${tgps} <= preStop ${preStop} + drain grace ${drain}`);
      // Startup probe budget must cover the router's wait for workers.
      const wait = argValue(c, '--wait-workers-s');
      if (wait !== undefined && c.startupProbe) {
        const budget = c.startupProbe.periodSeconds * c.startupProbe.failureThreshold;
        if (!(budget > Number(wait))) bad(`${cid}: startup probe budget ${budget} s <= --wait-workers-s ${wait}`);
      }
      const modelDir = argValue(c, '--model');
      const modelMount = (c.volumeMounts || []).find((m) => m.name === 'model');
      if (!modelMount) bad(`${cid}: no model volume mount`);
      else {
        if (!modelMount.readOnly) bad(`${cid}: the model volume is not mounted read-only`);
        if (!modelDir || !modelDir.startsWith(`${modelMount.mountPath.replace(/\/$/, '')}/`)) bad(`${cid}: --model ${modelDir} is not under ${modelMount.mountPath}`);
      }
      if (expect.scrapeAnnotations) {
        const a = tpl.metadata?.annotations || {};
        const mport = (c.ports || []).find((p) => p.name === 'metrics')?.containerPort;
        if (a['prometheus.io/scrape'] !== 'true' || Number(a['prometheus.io/port']) !== mport) bad(`${cid}: prometheus.io annotations missing or wrong port`);
      }
    }
    // model volume and fetch init step
    const mv = volumes.get('model');
    if (!mv) bad(`${id(w)}: no volume named model`);
    else {
      const kind = mv.persistentVolumeClaim ? 'pvc' : mv.hostPath ? 'hostPath' : mv.emptyDir ? 'emptyDir' : 'other';
      if (kind !== expect.modelVolume) bad(`${id(w)}: model volume is ${kind}, expected ${expect.modelVolume}`);
      const claim = mv.persistentVolumeClaim?.claimName;
      if (claim && claim !== expect.existingClaim && !of('PersistentVolumeClaim').some((p) => p.metadata.name === claim)) {
        bad(`${id(w)}: claim ${claim} is neither rendered nor the expected existing claim`);
      }
    }
    const init = (spec.initContainers || []).find((c) => c.name === 'fetch-model');
    if (!!init !== !!expect.fetch) bad(`${id(w)}: fetch-model init container ${init ? 'present' : 'absent'}, expected ${expect.fetch ? 'present' : 'absent'}`);
    if (init) {
      const cfgVol = volumes.get('config')?.configMap;
      if (!cfgVol || !configMaps.get(cfgVol.name)?.data?.['fetch-model.sh']) bad(`${id(w)}: fetch-model.sh is not in the mounted ConfigMap`);
      if ((init.volumeMounts || []).find((m) => m.name === 'model')?.readOnly) bad(`${id(w)}: fetch-model mounts the model volume read-only`);
    }
  }

  // --- router
  if (deployments.length !== 1) bad(`expected 1 router Deployment, found ${deployments.length}`);
  const router = deployments[0];
  const routerC = router?.spec.template.spec.containers.find((c) => c.name === 'router');
  if (router && !routerC) bad(`${id(router)}: no container named router`);

  // --- workers: one StatefulSet per group, one pod per rank, GPUs, /dev/shm, rank wiring, headless Services
  if (statefulSets.length !== expect.groups) bad(`expected ${expect.groups} worker StatefulSets, found ${statefulSets.length}`);
  const expectedAddrs = [];
  for (const s of statefulSets) {
    const spec = s.spec.template.spec;
    const c = spec.containers.find((x) => x.name === 'worker');
    if (!c) { bad(`${id(s)}: no container named worker`); continue; }
    if (s.spec.replicas !== expect.ranks) bad(`${id(s)}: replicas ${s.spec.replicas}, expected ${expect.ranks} ranks`);
    if (s.spec.podManagementPolicy !== 'Parallel') bad(`${id(s)}: podManagementPolicy is not Parallel (ranks rendezvous together)`);
    const gpuLimit = c.resources?.limits?.['nvidia.com/gpu'];
    const gpuRequest = c.resources?.requests?.['nvidia.com/gpu'];
    if (expect.gpu) {
      if (Number(gpuLimit) !== 1) bad(`${id(s)}: nvidia.com/gpu limit is ${gpuLimit}, expected 1 per rank`);
      if (gpuRequest !== undefined && String(gpuRequest) !== String(gpuLimit)) bad(`${id(s)}: nvidia.com/gpu request ${gpuRequest} != limit ${gpuLimit}`);
      if (!(spec.tolerations || []).some((t) => t.key === 'nvidia.com/gpu')) bad(`${id(s)}: no toleration for the nvidia.com/gpu taint`);
    } else if (gpuLimit !== undefined || gpuRequest !== undefined) {
      bad(`${id(s)}: nvidia.com/gpu requested in a CPU-only profile`);
    }
    // The engine: the GPU engine exactly when the ranks have GPUs (expected in cases.json).
    const device = argValue(c, '--device');
    if (expect.device !== undefined && device !== expect.device) bad(`${id(s)}: --device=${device}, expected ${expect.device}`);
    if (device === 'cuda' && !expect.gpu) bad(`${id(s)}: --device=cuda without a GPU`);
    const shmMount = (c.volumeMounts || []).find((m) => m.mountPath === '/dev/shm');
    if (expect.shm) {
      const vol = shmMount && (spec.volumes || []).find((v) => v.name === shmMount.name);
      if (!vol?.emptyDir || vol.emptyDir.medium !== 'Memory') bad(`${id(s)}: /dev/shm is not a memory-backed emptyDir`);
    } else if (shmMount) bad(`${id(s)}: /dev/shm mounted although shm is off`);
    // Expert-parallel environment.
    const rank = (c.env || []).find((e) => e.name === 'QUARRY_RANK');
    if (rank?.valueFrom?.fieldRef?.fieldPath !== "metadata.labels['apps.kubernetes.io/pod-index']") bad(`${id(s)}: QUARRY_RANK does not come from the pod-index label`);
    const world = envValue(c, 'QUARRY_WORLD_SIZE');
    if (Number(world) !== s.spec.replicas) bad(`${id(s)}: QUARRY_WORLD_SIZE ${world} != replicas ${s.spec.replicas}`);
    const ns = s.metadata.namespace;
    const svcName = s.spec.serviceName;
    const master = envValue(c, 'QUARRY_MASTER_ADDR');
    const wantMaster = `${s.metadata.name}-0.${svcName}.${ns}.svc.${CLUSTER_DOMAIN}`;
    if (master !== wantMaster) bad(`${id(s)}: QUARRY_MASTER_ADDR ${master}, expected ${wantMaster}`);
    const mport = envValue(c, 'QUARRY_MASTER_PORT');
    const rdv = (c.ports || []).find((p) => p.name === 'rendezvous')?.containerPort;
    if (Number(mport) !== rdv) bad(`${id(s)}: QUARRY_MASTER_PORT ${mport} != rendezvous containerPort ${rdv}`);
    if (!envValue(c, 'NCCL_DEBUG')) bad(`${id(s)}: NCCL_DEBUG not set`);
    if (s.spec.replicas > 1) {
      const pa = spec.affinity?.podAffinity;
      const terms = [...(pa?.requiredDuringSchedulingIgnoredDuringExecution || []),
        ...(pa?.preferredDuringSchedulingIgnoredDuringExecution || []).map((t) => t.podAffinityTerm)];
      if (!terms.some((t) => same(t.labelSelector?.matchLabels, s.spec.selector.matchLabels))) bad(`${id(s)}: no podAffinity keeping the group's ranks together`);
    }
    // The headless Service behind serviceName.
    const hs = services.find((x) => x.metadata.name === svcName);
    if (!hs) bad(`${id(s)}: serviceName ${svcName} is not rendered`);
    else {
      if (hs.spec.clusterIP !== 'None') bad(`${id(hs)}: not headless`);
      if (hs.spec.publishNotReadyAddresses !== true) bad(`${id(hs)}: publishNotReadyAddresses is not true (ranks must resolve rank 0 before readiness)`);
      if (!same(hs.spec.selector, s.spec.selector.matchLabels)) bad(`${id(hs)}: selector differs from ${id(s)}'s selector`);
      if (!(hs.spec.ports || []).some((p) => p.port === rdv)) bad(`${id(hs)}: does not expose the rendezvous port ${rdv}`);
    }
    const grpcPort = (c.ports || []).find((p) => p.name === 'grpc')?.containerPort;
    for (let r = 0; r < s.spec.replicas; r++) expectedAddrs.push(`${s.metadata.name}-${r}.${svcName}.${ns}.svc.${CLUSTER_DOMAIN}:${grpcPort}`);
  }
  // Groups must not select each other's pods.
  for (const a of statefulSets) for (const b of statefulSets) {
    if (a !== b && subset(a.spec.selector.matchLabels, b.spec.template.metadata.labels)) bad(`${id(a)}: selector also matches ${id(b)}'s pods`);
  }
  if (routerC) {
    const workers = (argValue(routerC, '--workers') || '').split(',').filter(Boolean);
    if (expectedAddrs.length !== expect.groups * expect.ranks) bad(`expected ${expect.groups * expect.ranks} ranks, rendered ${expectedAddrs.length}`);
    if (JSON.stringify([...workers].sort()) !== JSON.stringify([...expectedAddrs].sort())) {
      bad(`router --workers (${workers.length}: ${workers.join(',')}) is not every rank of every group (${expectedAddrs.length}: ${expectedAddrs.join(',')})`);
    }
  }

  // --- Services: selectors match pods, target ports exist, gRPC ports are h2c
  for (const svc of services) {
    const sel = svc.spec.selector;
    if (!sel || Object.keys(sel).length === 0) { bad(`${id(svc)}: no selector`); continue; }
    const matched = workloads.filter((w) => subset(sel, w.spec.template.metadata.labels));
    if (matched.length === 0) { bad(`${id(svc)}: selector matches no pod template`); continue; }
    for (const p of svc.spec.ports || []) {
      if (p.name === 'grpc' && p.appProtocol !== 'kubernetes.io/h2c') bad(`${id(svc)}: grpc port without appProtocol kubernetes.io/h2c`);
      for (const w of matched) {
        const cports = w.spec.template.spec.containers.flatMap((c) => c.ports || []);
        const ok = typeof p.targetPort === 'string' ? cports.some((cp) => cp.name === p.targetPort) : cports.some((cp) => cp.containerPort === (p.targetPort ?? p.port));
        if (!ok) bad(`${id(svc)}: targetPort ${p.targetPort} is not a container port of ${id(w)}`);
      }
    }
  }
  if (router && !services.some((s) => s.spec.clusterIP !== 'None' && subset(s.spec.selector, router.spec.template.metadata.labels))) bad('no Service in front of the router');

  // --- PodDisruptionBudgets select exactly one workload's pods
  const pdbs = of('PodDisruptionBudget');
  for (const p of pdbs) {
    const m = workloads.filter((w) => subset(p.spec.selector?.matchLabels, w.spec.template.metadata.labels));
    if (m.length !== 1) bad(`${id(p)}: selector matches ${m.length} workloads, expected 1`);
    if (p.spec.maxUnavailable === 0 || p.spec.maxUnavailable === '0%') bad(`${id(p)}: maxUnavailable 0 blocks node drains`);
  }
  const routerPdb = router && pdbs.some((p) => subset(p.spec.selector?.matchLabels, router.spec.template.metadata.labels));
  if (!!routerPdb !== !!expect.routerPdb) bad(`router PodDisruptionBudget ${routerPdb ? 'present' : 'absent'}, expected ${expect.routerPdb ? 'present' : 'absent'}`);
  for (const s of statefulSets) {
    const has = pdbs.some((p) => subset(p.spec.selector?.matchLabels, s.spec.template.metadata.labels));
    if (has !== !!expect.workerPdb) bad(`${id(s)}: PodDisruptionBudget ${has ? 'present' : 'absent'}, expected ${expect.workerPdb ? 'present' : 'absent'}`);
  }

  // --- HPA
  const hpas = of('HorizontalPodAutoscaler');
  if ((hpas.length > 0) !== !!expect.hpa) bad(`HPA ${hpas.length ? 'present' : 'absent'}, expected ${expect.hpa ? 'present' : 'absent'}`);
  for (const h of hpas) {
    const t = h.spec.scaleTargetRef;
    if (!(t.kind === 'Deployment' && deployments.some((d) => d.metadata.name === t.name))) bad(`${id(h)}: scaleTargetRef ${t.kind}/${t.name} not rendered`);
    if (h.spec.minReplicas > h.spec.maxReplicas) bad(`${id(h)}: minReplicas > maxReplicas`);
    if (router && router.spec.replicas !== undefined) bad(`${id(router)}: sets replicas although an HPA owns the count`);
  }

  // --- PVC
  const pvcs = of('PersistentVolumeClaim');
  if ((pvcs.length > 0) !== !!expect.createdClaim) bad(`model PVC ${pvcs.length ? 'rendered' : 'not rendered'}, expected ${expect.createdClaim ? 'rendered' : 'not rendered'}`);

  // --- ServiceMonitors select a Service with the named port
  const sms = of('ServiceMonitor');
  if (sms.length !== (expect.serviceMonitors || 0)) bad(`expected ${expect.serviceMonitors || 0} ServiceMonitors, found ${sms.length}`);
  for (const sm of sms) {
    const ms = services.filter((s) => subset(sm.spec.selector?.matchLabels, s.metadata.labels));
    if (ms.length === 0) bad(`${id(sm)}: selector matches no Service`);
    for (const ep of sm.spec.endpoints || []) {
      for (const s of ms) if (!(s.spec.ports || []).some((p) => p.name === ep.port)) bad(`${id(sm)}: ${id(s)} has no port named ${ep.port}`);
    }
    if (!(sm.spec.namespaceSelector?.matchNames || []).includes(sm.metadata.namespace)) bad(`${id(sm)}: namespaceSelector misses its own namespace`);
    if (!subset(expect.serviceMonitorLabels, sm.metadata.labels)) bad(`${id(sm)}: labels ${JSON.stringify(sm.metadata.labels)} lack ${JSON.stringify(expect.serviceMonitorLabels)}`);
  }
  return out;
}
