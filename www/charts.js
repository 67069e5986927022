// The dashboard's plots, drawn with uPlot (vendor/uPlot.iife.min.js, copied
// from npm by `cargo xtask pkg`): small (50 KB), fast on a phone, made for
// time series. Each chart sits in a <figure> whose caption is its text
// alternative (the current value and the range shown), kept up to date
// with the chart; without uPlot (vendor/ not copied) the captions remain.
const WINDOW_S = 300; // what the time-series charts show: the last 5 minutes
const MAX_POINTS = 600;

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** A time series of one or more values; `draw()` at most once a second. */
export class Series {
  constructor({ el, caption, series, scales = {}, describe, lines = [] }) {
    this.el = el;
    this.caption = caption;
    this.describe = describe;
    this.data = [[], ...series.map(() => [])];
    this.dirty = false;
    this.plot = null;
    const U = window.uPlot;
    if (!U || !el) return;
    const width = () => Math.max(200, el.clientWidth || 300);
    const opts = {
      width: width(),
      height: 120,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: true }, ...scales },
      axes: [
        {
          stroke: css('--muted'), grid: { stroke: '#334155' }, ticks: { stroke: '#334155' }, space: 70,
          values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' })),
        },
        ...series.map((s, i) => ({
          scale: s.scale,
          side: i === 0 ? 3 : 1,
          show: i === 0 || s.axis === true,
          stroke: css('--muted'),
          grid: { show: i === 0, stroke: '#334155' },
          size: 50,
          values: s.values,
          splits: s.splits,
        })),
      ],
      series: [{}, ...series.map((s) => ({ label: s.label, scale: s.scale, stroke: s.stroke, width: 2, spanGaps: false, points: { show: !!s.points, size: 5, fill: s.stroke } }))],
      hooks: {
        draw: [(u) => {
          // Threshold lines (the stale limit): drawn across the plot.
          const { ctx } = u;
          for (const line of lines) {
            const y = u.valToPos(line.value, line.scale, true);
            ctx.save();
            ctx.strokeStyle = line.stroke;
            ctx.setLineDash([6, 4]);
            ctx.lineWidth = 1.5;
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
            ctx.restore();
          }
        }],
      },
    };
    this.plot = new U(opts, this.data, el);
    new ResizeObserver(() => this.plot.setSize({ width: width(), height: 120 })).observe(el);
  }

  /** One sample: `values` in the order of the series (null: a gap). */
  push(values, at = Date.now() / 1000) {
    this.data[0].push(at);
    values.forEach((v, i) => this.data[i + 1].push(v));
    const cut = this.data[0].findIndex((t) => t >= at - WINDOW_S);
    const drop = Math.max(cut, this.data[0].length - MAX_POINTS);
    if (drop > 0) for (const col of this.data) col.splice(0, drop);
    this.dirty = true;
  }

  draw() {
    if (!this.dirty) return;
    this.dirty = false;
    this.caption.textContent = this.describe(this.data);
    if (this.plot) {
      const now = Date.now() / 1000;
      this.plot.setData(this.data, false);
      this.plot.setScale('x', { min: now - WINDOW_S, max: now });
    }
  }
}

/** The finite values of a column, with min, max and last. */
export function range(col) {
  const v = col.filter((x) => x !== null && Number.isFinite(x));
  if (!v.length) return null;
  return { min: Math.min(...v), max: Math.max(...v), last: v[v.length - 1], n: v.length };
}

// The connection timeline: one row of coloured bands per link (this
// browser's link, the radio link, the power meter link), a band per state
// with its time, and a marker at each reconnect. Plain DOM (a band is a
// box of a width): a chart library adds nothing here, and each band is
// text a screen reader can read (its title and a visually hidden label).
const TIMELINE_S = 600;
const MAX_BANDS = 200;
const STATE_CLASS = {
  connected: 'connected', connecting: 'connecting', reconnecting: 'reconnecting', stale: 'stale',
  disconnected: 'disconnected', failed: 'failed',
};

export class Timeline {
  constructor(el, names) {
    this.el = el;
    this.rows = new Map();
    for (const [key, name] of names) {
      const row = document.createElement('div');
      row.className = 'tl-row';
      const label = document.createElement('span');
      label.className = 'tl-name';
      label.textContent = name;
      const track = document.createElement('div');
      track.className = 'tl-track';
      track.setAttribute('role', 'list');
      track.setAttribute('aria-label', `${name} connection timeline`);
      row.append(label, track);
      el.append(row);
      this.rows.set(key, { track, bands: [] });
    }
  }

  /** `key` entered `state` now; `reconnect` marks a reconnect. */
  enter(key, state, { reconnect = false, at = Date.now() } = {}) {
    const row = this.rows.get(key);
    if (!row) return;
    const last = row.bands[row.bands.length - 1];
    if (last && last.state === state && !reconnect) return;
    row.bands.push({ state, from: at, reconnect });
    if (row.bands.length > MAX_BANDS) row.bands.shift();
    this.draw();
  }

  draw(now = Date.now()) {
    const start = now - TIMELINE_S * 1000;
    for (const row of this.rows.values()) {
      const items = [];
      row.bands.forEach((b, i) => {
        const to = row.bands[i + 1]?.from ?? now;
        if (to < start) return;
        const from = Math.max(b.from, start);
        const band = document.createElement('div');
        band.setAttribute('role', 'listitem');
        band.className = `tl-band ${STATE_CLASS[b.state] || 'disconnected'}${b.reconnect ? ' tl-reconnect' : ''}`;
        band.style.left = `${((from - start) / (TIMELINE_S * 10)).toFixed(3)}%`;
        band.style.width = `${Math.max(0.3, (to - from) / (TIMELINE_S * 10)).toFixed(3)}%`;
        const text = `${b.state}${b.reconnect ? ' (reconnect)' : ''} from ${new Date(b.from).toLocaleTimeString('en-GB')}, ${((to - b.from) / 1000).toFixed(0)} s`;
        band.title = text;
        const hidden = document.createElement('span');
        hidden.className = 'visually-hidden';
        hidden.textContent = text;
        band.append(hidden);
        items.push(band);
      });
      row.track.replaceChildren(...items);
    }
  }
}
