// Toasts: short notices in one polite live region (screen readers hear them
// at the next pause, never cutting the operator off), each with a close
// button, kept on screen for a while (an alarm until dismissed), at most
// MAX_SHOWN at once. The same notice again raises a counter on the one
// shown instead of stacking ("150 refused: rate limited"). Every notice
// also goes to the "Past notices" list, so nothing is lost when one goes.
const MAX_SHOWN = 4;
const KEEP_MS = { info: 10_000, warn: 20_000, error: 30_000, alarm: Infinity };
const MAX_PAST = 100;

const shown = new Map(); // key -> { el, count, text, timer }
let stack;
let past;
let pastCount;

/** Where toasts go: the stack, and the past-notices list with its counter. */
export function mountToasts({ stackEl, pastEl, pastCountEl }) {
  stack = stackEl;
  past = pastEl;
  pastCount = pastCountEl;
}

function remove(key) {
  const t = shown.get(key);
  if (!t) return;
  clearTimeout(t.timer);
  t.el.remove();
  shown.delete(key);
}

function label(t) {
  if (t.counted) return t.counted(t.count);
  return t.count > 1 ? `${t.text} (×${t.count})` : t.text;
}

function remember(text, kind) {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = `${new Date().toLocaleTimeString('en-GB')} ${text}`;
  past.prepend(li);
  while (past.children.length > MAX_PAST) past.lastChild.remove();
  pastCount.textContent = String(past.children.length);
}

/**
 * Shows a notice. `key` dedupes (default: the text); `counted(n)` words a
 * repeated one ("n refused: rate limited").
 */
export function toast(text, kind = 'info', { key = text, counted } = {}) {
  const existing = shown.get(key);
  if (existing) {
    existing.count++;
    existing.msg.textContent = label(existing);
    clearTimeout(existing.timer);
    existing.timer = schedule(key, kind);
    if (existing.count % 50 === 0) remember(label(existing), kind);
    return;
  }
  remember(counted ? counted(1) : text, kind);
  while (shown.size >= MAX_SHOWN) {
    // The oldest that is not an alarm goes first; alarms stay longest.
    const [oldest] = [...shown].find(([, t]) => t.kind !== 'alarm') || [...shown][0];
    remove(oldest);
  }
  const el = document.createElement('div');
  el.className = `toast ${kind}`;
  const msg = document.createElement('span');
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'toast-close';
  close.setAttribute('aria-label', 'Dismiss notice');
  // The × is drawn by CSS: the toast's text stays the notice alone.
  close.addEventListener('click', () => remove(key));
  el.append(msg, close);
  const t = { el, msg, count: 1, text, kind, counted, timer: null };
  msg.textContent = label(t);
  shown.set(key, t);
  stack.append(el);
  t.timer = schedule(key, kind);
}

function schedule(key, kind) {
  const ms = KEEP_MS[kind] ?? KEEP_MS.info;
  return Number.isFinite(ms) ? setTimeout(() => remove(key), ms) : null;
}
