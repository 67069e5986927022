// The same connection interface as edge-client.js, on Socket.IO's own client
// (socket.io-client, WebSocket transport, MessagePack parser), against
// socketio-server.js: `publish` is an emit with an acknowledgement callback,
// events arrive as `event` messages.
import { io } from 'socket.io-client';
import parser from 'socket.io-msgpack-parser';

const options = { parser, transports: ['websocket'], reconnection: false, forceNew: true };

export class SocketIoConnection {
  constructor(url, _clientId, { onEvent = () => {}, onAnswer = () => {} } = {}) {
    this.answered = 0;
    this.sent = 0;
    this.rejected = 0;
    this.gaps = 0;
    this.holes = 0;
    this.duplicates = 0;
    this.window = Infinity;
    this.socket = io(url, options);
    this.socket.on('event', onEvent);
    this.answer = () => { this.answered++; onAnswer(); };
    this.ready = new Promise((resolve, reject) => {
      this.socket.on('connect', resolve);
      this.socket.on('connect_error', reject);
    });
  }

  publish(payload) {
    this.socket.emit('publish', payload, this.answer);
    return ++this.sent;
  }

  // Socket.IO runs its own heartbeat; broadcasts are not acknowledged.
  tick() {}

  close() {
    this.socket.close();
  }
}

export function startTicks() {
  return () => {};
}
