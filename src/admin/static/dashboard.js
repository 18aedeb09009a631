// noisesearch dashboard: vanilla JS, no dependencies. Reads the admin API with the HttpOnly cookie set by
// GET /dashboard?token=...; follows one job live through its server-sent events (/admin/jobs/<id>/events).
'use strict';
(function () {
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  };
  const SVG = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  };
  const fmt = (n) => (n === undefined || n === null ? '' : Number(n).toLocaleString('en-US'));
  const score = (x) => (typeof x === 'number' ? x.toFixed(3) : '');
  const bytes = (b) => (b === undefined ? '' : `${(b / 1048576).toFixed(1)} MiB`);

  let selected = null;      // job id followed now
  let source = null;        // its EventSource
  let plan = null;          // its plan
  let points = [];          // [{nfes, score}] for the chart
  let authed = false;

  async function api(url, init) {
    const res = await fetch(url, Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, init || {}));
    if (res.status === 401) { showLogin('The token was refused (or none is set).'); throw new Error('401'); }
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    return res.json();
  }

  function showLogin(msg) {
    authed = false;
    $('#app').hidden = true;
    $('#login').hidden = false;
    if (msg) $('#login-msg').textContent = msg;
    $('#status').textContent = 'no access';
  }

  function showApp() {
    if (authed) return;
    authed = true;
    $('#login').hidden = true;
    $('#app').hidden = false;
  }

  // ---- workers ----
  async function refreshWorkers() {
    const workers = await api('/admin/workers');
    const body = $('#workers tbody');
    body.replaceChildren(...workers.map((w) => el('tr', {},
      el('td', {}, w.address), el('td', {}, w.serving ? 'serving' : 'DOWN'), el('td', {}, w.device || ''),
      el('td', {}, (w.models || []).map((m) => m.name).join(', ')), el('td', {}, w.inFlight), el('td', {}, w.leases),
      el('td', {}, `${bytes(w.memoryUsedBytes)} / ${bytes(w.memoryCapBytes)}`))));
  }

  // ---- jobs ----
  async function refreshJobs() {
    const state = $('#state-filter').value;
    const [list, usage] = await Promise.all([
      api(`/admin/jobs?limit=50${state ? `&state=${encodeURIComponent(state)}` : ''}`),
      api('/admin/usage'),
    ]);
    $('#usage').textContent = `${fmt(usage.totals.jobs)} jobs kept, ${fmt(usage.totals.totalNfes)} NFEs in total `
      + `(search ${fmt(usage.totals.searchNfes)}, final ${fmt(usage.totals.finalNfes)}, recovery ${fmt(usage.totals.recoveryNfes)}); `
      + `${list.counts.running} running, ${list.counts.queued} queued`;
    const body = $('#jobs tbody');
    body.replaceChildren(...list.jobs.map((j) => {
      const tr = el('tr', { 'data-job': j.id, class: j.id === selected ? 'selected' : '' },
        el('td', {}, el('code', {}, j.id.slice(0, 12))), el('td', {}, el('span', { class: `badge ${j.state}` }, j.state)),
        el('td', {}, j.clientId), el('td', {}, j.algorithm), el('td', {}, `${j.roundsDone} / ${j.rounds}`),
        el('td', {}, `${fmt(j.nfesSpent)} / ${fmt(j.plannedSearchNfes)}`), el('td', {}, (j.createdAt || '').replace('T', ' ').slice(0, 19)));
      tr.addEventListener('click', () => { location.hash = `job=${j.id}`; });
      return tr;
    }));
    // Nothing chosen: follow the newest running job.
    if (!selected && !location.hash) {
      const running = list.jobs.find((j) => j.state === 'running');
      if (running) follow(running.id);
    }
    if (selected) {
      const mine = list.jobs.find((j) => j.id === selected);
      if (mine) setState(mine.state);
    }
  }

  function setState(state) {
    const b = $('#job-state');
    b.textContent = state;
    b.className = `badge ${state}`;
    $('#cancel').hidden = !(state === 'running' || state === 'queued');
  }

  // ---- one job, live ----
  function follow(id) {
    if (selected === id) return;
    if (source) source.close();
    selected = id;
    plan = null;
    points = [];
    $('#job').hidden = false;
    $('#job-id').textContent = id;
    $('#plan').replaceChildren();
    $('#rounds').replaceChildren();
    $('#result').replaceChildren(el('span', { class: 'muted' }, 'not yet'));
    drawChart();
    setState('…');
    source = new EventSource(`/admin/jobs/${encodeURIComponent(id)}/events`);
    source.addEventListener('plan', (m) => onPlan(JSON.parse(m.data)));
    source.addEventListener('round', (m) => onRound(JSON.parse(m.data)));
    source.addEventListener('result', (m) => onResult(JSON.parse(m.data)));
    let resultShown = false;
    source.addEventListener('result', () => { resultShown = true; });
    source.addEventListener('end', (m) => {
      const d = JSON.parse(m.data);
      setState(d.state);
      if (d.error) $('#result').replaceChildren(el('span', { class: 'muted' }, d.error));
      source.close();
      // The job ended: the table and (if the stream missed it) the result, now rather than at the next poll.
      tick();
      if (d.state === 'succeeded' && !resultShown) {
        api(`/admin/jobs/${encodeURIComponent(id)}`).then((j) => { if (selected === id && j.result) onResult(j.result); }, () => undefined);
      }
    });
    source.onerror = () => { $('#status').textContent = 'event stream interrupted'; };
  }

  function onPlan(p) {
    // A reconnected stream replays every event from the plan on: start the rounds and the chart afresh.
    plan = p;
    points = [];
    $('#rounds').replaceChildren();
    drawChart();
    setState('running');
    const rows = [
      ['algorithm', p.algorithm], ['N / K / M', [p.n, p.k, p.m].map((x) => x || 0).join(' / ')], ['rounds', p.rounds],
      ['search NFEs', fmt(p.searchNfes)], ['final NFEs', fmt(p.finalNfes)], ['total NFEs', fmt(p.totalNfes)],
      ['budget', p.budgetNfes && p.budgetNfes !== '0' ? fmt(p.budgetNfes) : 'none'],
      ['NFEs per candidate', fmt(p.nfesPerCandidate)], ['selection', (p.selectionVerifiers || []).join(', ')],
      ['reported', (p.reportedVerifiers || []).join(', ')],
    ];
    if (p.shrunk) rows.push(['shrunk', `${p.shrunkAxis} from ${p.requestedAxisValue}`]);
    $('#plan').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v === undefined ? '' : v)]));
  }

  function bestOf(round) {
    const sel = plan && plan.selectionVerifiers && plan.selectionVerifiers[0];
    const s = (round.bestScores || []).find((x) => x.verifier === sel) || (round.bestScores || [])[0];
    return s ? { verifier: s.verifier, score: s.score } : null;
  }

  function onRound(r) {
    const best = bestOf(r);
    if (best) points.push({ nfes: Number(r.nfesSpent || 0), score: best.score, verifier: best.verifier });
    drawChart();
    const kept = new Set(r.kept || []);
    const cands = (r.candidates || []);
    const keptCands = cands.filter((c) => kept.has(c.id));
    const thumbs = el('span', { class: 'thumbs' }, ...keptCands.slice(0, 8).map((c) => el('img', {
      loading: 'lazy',
      src: `/admin/jobs/${encodeURIComponent(selected)}/candidates/${encodeURIComponent(c.id)}.png`,
      alt: c.id, title: `${c.id}: ${score(c.ensembleScore)}`,
    })));
    const scores = (r.bestScores || []).map((s) => `${s.verifier} ${score(s.score)}${s.heldOut ? ' (held out)' : ''}`).join(', ');
    const li = el('li', { 'data-round': r.round || 0 },
      el('strong', {}, `round ${r.round || 0}`), ` · ${fmt(r.nfesSpent)} NFEs · best: ${scores} · `,
      `${cands.length} candidates, kept ${(r.kept || []).join(', ')}`, r.note ? ` · ${r.note}` : '', ' ', thumbs);
    $('#rounds').prepend(li);
  }

  function onResult(res) {
    const acc = res.accounting || {};
    const figs = (res.outputs || []).map((o) => el('figure', {},
      o.png ? el('img', { src: o.png, alt: `output ${o.rank}` }) : el('span', {}, '(no PNG asked)'),
      el('figcaption', {}, `rank ${o.rank || 0} · ${(o.scores || []).map((s) => `${s.verifier} ${score(s.score)}`).join(', ')}`)));
    const account = el('p', { class: 'muted' }, `NFEs: search ${fmt(acc.searchNfes)} (planned ${fmt(acc.plannedSearchNfes)}), `
      + `final ${fmt(acc.finalNfes)}, total ${fmt(acc.totalNfes)}, recovery ${fmt(acc.recoveryNfes || 0)}; `
      + `${fmt(acc.workerCalls)} worker calls; ${score(res.wallSeconds)} s`);
    $('#result').replaceChildren(...figs, account);
  }

  // ---- the chart: best score (selection verifier) against search NFEs spent ----
  function drawChart() {
    const c = $('#chart');
    const W = 420, H = 220, L = 48, R = 12, T = 12, B = 30;
    c.replaceChildren(
      svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
      svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    if (points.length === 0) return;
    const maxX = Math.max(Number(plan && plan.searchNfes) || 0, ...points.map((p) => p.nfes), 1);
    let lo = Math.min(...points.map((p) => p.score)), hi = Math.max(...points.map((p) => p.score));
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const x = (v) => L + (v / maxX) * (W - L - R);
    const y = (v) => H - B - ((v - lo) / (hi - lo)) * (H - T - B);
    const label = (text, attrs) => { const t = svg('text', attrs); t.textContent = text; return t; };
    c.append(
      label(hi.toFixed(2), { x: 4, y: T + 8 }), label(lo.toFixed(2), { x: 4, y: H - B }),
      label('0', { x: L, y: H - B + 14 }), label(`${fmt(maxX)} NFEs`, { x: W - R - 70, y: H - B + 14 }),
      label(points[0].verifier || 'score', { x: L + 6, y: T + 8 }));
    c.append(svg('polyline', { class: 'line', points: points.map((p) => `${x(p.nfes).toFixed(1)},${y(p.score).toFixed(1)}`).join(' ') }));
    for (const p of points) c.append(svg('circle', { class: 'dot', cx: x(p.nfes).toFixed(1), cy: y(p.score).toFixed(1), r: 3 }));
  }

  // ---- wiring ----
  $('#cancel').addEventListener('click', async () => {
    if (!selected) return;
    try {
      const res = await fetch(`/admin/jobs/${encodeURIComponent(selected)}/cancel`, { method: 'POST', credentials: 'same-origin' });
      if (res.status === 403) $('#status').textContent = 'this token is read-only: cancelling needs an admin token';
    } catch (e) { /* shown by the next refresh */ }
  });
  $('#state-filter').addEventListener('change', () => tick());
  window.addEventListener('hashchange', fromHash);
  function fromHash() {
    const m = /job=([A-Za-z0-9._-]+)/.exec(location.hash);
    if (m) follow(m[1]);
  }

  async function tick() {
    try {
      await Promise.all([refreshJobs(), refreshWorkers()]);
      showApp();
      $('#status').textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (String(e.message) !== '401') $('#status').textContent = `error: ${e.message}`;
    }
  }

  if (/denied=1/.test(location.search)) showLogin('That token was refused.');
  tick().then(fromHash);
  setInterval(() => { if (authed) tick(); }, 2000);
})();
