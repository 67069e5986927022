import init, { Link } from 'station-link';
await init();
const link = new Link('ws://127.0.0.1:8080/ws');
link.send('radio.ptt', { on: true }, { delivery: 'volatile', ttl: 2000 }); // typo
