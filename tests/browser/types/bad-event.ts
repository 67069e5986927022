import init, { Link } from 'station-link';
await init();
const link = new Link('ws://127.0.0.1:8080/ws');
link.on('evnet', (e) => console.log(e)); // typo
