import init, { Link } from 'station-link';
await init();
new Link('ws://127.0.0.1:8080/ws', { maxAttempt: 3 }); // typo
