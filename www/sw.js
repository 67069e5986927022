// Offline-first: the dashboard loads even when the proxy (which serves it)
// is down, shows the link as not connected, and recovers by itself.
// Network first, so a running proxy always serves the current dashboard;
// the cache answers only when the network cannot.
const CACHE = 'station-dashboard-v2';
const ASSETS = ['./', './index.html', './app.js', './bands.js', './charts.js', './toasts.js', './programs.js', './style.css', './pkg/station_link.js', './pkg/station_link_bg.wasm'];

self.addEventListener('install', (event) => {
  // The chart library is optional (the plots' captions stand without it).
  const optional = ['./vendor/uPlot.iife.min.js', './vendor/uPlot.min.css'];
  event.waitUntil(caches.open(CACHE)
    .then((cache) => cache.addAll(ASSETS).then(() => Promise.all(optional.map((a) => cache.add(a).catch(() => {})))))
    .then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  const live = ['/ws', '/stats', '/metrics', '/healthz'].includes(url.pathname);
  if (event.request.method !== 'GET' || url.origin !== location.origin || live) return;
  // Cached by path alone: a URL with a query (a ?token=, backoff settings)
  // is never a cache key, so no secret ever lands in the cache.
  const key = `${url.origin}${url.pathname}`;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(key, copy));
        }
        return response;
      })
      .catch(() => caches.match(key)),
  );
});
