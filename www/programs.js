// The programs sharing the radio through the proxy's rig port (WSJT-X,
// fldigi, loggers on Hamlib NET rigctl) and its virtual Kenwood port,
// listed beside the dashboards: address, the name a program gave, role,
// last command, and whether it holds the transmitter. Self-contained: it
// reads /stats every 2 s and draws its own section, so the dashboard's
// app.js needs nothing from it. Names come from programs on the network:
// only ever set as text, never as HTML.

const PERIOD_MS = 2000;

function section() {
  let el = document.getElementById('programs');
  if (el) return el;
  el = document.createElement('section');
  el.id = 'programs';
  el.className = 'programs';
  el.setAttribute('aria-labelledby', 'programs-h');
  const h = document.createElement('h2');
  h.id = 'programs-h';
  h.textContent = 'Dashboards and programs';
  const summary = document.createElement('p');
  summary.id = 'programs-summary';
  const table = document.createElement('table');
  table.id = 'programs-table';
  const head = table.createTHead().insertRow();
  for (const title of ['program', 'port', 'role', 'last command or state', 'PTT']) {
    const th = document.createElement('th');
    th.textContent = title;
    head.appendChild(th);
  }
  table.createTBody();
  el.append(h, summary, table);
  const anchor = document.querySelector('section.events') || document.querySelector('section.radio');
  if (anchor) anchor.after(el);
  else (document.querySelector('main') || document.body).appendChild(el);
  return el;
}

function render(stats) {
  const el = section();
  const programs = (stats && stats.programs) || {};
  const list = Array.isArray(programs.list) ? programs.list : [];
  const dashboards = (stats && stats.connections && stats.connections.active) || 0;
  const where = [
    programs.rigctl_listen ? `rig port ${programs.rigctl_listen}` : null,
    programs.virtual_cat ? `virtual port ${programs.virtual_cat}` : null,
  ].filter(Boolean).join(', ');
  el.querySelector('#programs-summary').textContent = where
    ? `${list.length} program(s), ${dashboards} dashboard(s); ${where}`
    : `no rig port configured (rigctl_listen); ${dashboards} dashboard(s)`;
  const body = el.querySelector('#programs-table').tBodies[0];
  // The dashboards too (from the session registry), with the one keying.
  const keyedBy = stats && stats.tx ? stats.tx.keyed_by : null;
  const sessions = (Array.isArray(stats && stats.sessions) ? stats.sessions : [])
    .filter((d) => d.state === 'connected' || d.state === 'stale')
    .map((d) => ({
      name: `dashboard ${String(d.client_id).slice(0, 8)}`,
      address: d.remote,
      port: 'WebSocket',
      role: d.role || 'open',
      last_command: d.state,
      keyed: keyedBy !== null && d.client_id === keyedBy,
    }));
  body.replaceChildren(...[...sessions, ...list].map((p) => {
    const row = document.createElement('tr');
    if (p.keyed) row.className = 'keyed';
    const who = p.name ? `${p.name} (${p.address})` : String(p.address);
    for (const text of [who, p.port, p.role, p.last_command || '–', p.keyed ? 'TX' : '']) {
      const td = document.createElement('td');
      td.textContent = text;
      row.appendChild(td);
    }
    return row;
  }));
}

async function refresh() {
  try {
    const response = await fetch('stats', { cache: 'no-store' });
    if (response.ok) render(await response.json());
  } catch {
    // The proxy is away; the dashboard's own badge says so. Try again later.
  }
}

refresh();
setInterval(refresh, PERIOD_MS);
