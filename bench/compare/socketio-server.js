// Socket.IO 4 server doing what the edge proxy does, as far as Socket.IO
// allows: every publish is acknowledged to its sender and broadcast to all
// clients; connection state recovery keeps missed packets for 2 minutes.
// (No durable log and no per-event consumer acks: Socket.IO has neither.)
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import parser from 'socket.io-msgpack-parser';

const port = Number(process.argv[2] || 0);
const httpServer = createServer();
const io = new Server(httpServer, {
  parser,
  transports: ['websocket'],
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 },
  maxHttpBufferSize: 1e6,
});
io.on('connection', (socket) => {
  socket.on('publish', (payload, ack) => {
    io.emit('event', payload);
    if (typeof ack === 'function') ack();
  });
});
httpServer.listen(port, '127.0.0.1', () => console.log(`listening ${httpServer.address().port}`));
