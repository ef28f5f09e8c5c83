// A connection's first bytes examined before the server's own listeners: put back intact, and interceptors stack.
import t from 'tap'
import { connect, createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { interceptConnections, peekFirstBytes } from '../../src/net/first-bytes.js'

/** Sends `data`, half-closes, and returns everything the server sent back. */
function exchange(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(data))
    let answer = ''
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString()
    })
    socket.on('end', () => resolve(answer))
    socket.on('error', reject)
  })
}

t.test('bytes read by stacked interceptors reach the server intact; each answers only its own connections', async (t) => {
  // The server's own listener echoes what it reads, prefixed.
  const server = createServer((socket: Socket) => {
    let seen = ''
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString()
    })
    socket.on('end', () => socket.end(`server:${seen}`))
  })
  const interceptor = (letter: string) => (socket: Socket, handOn: (socket: Socket) => void): void =>
    peekFirstBytes(socket, (bytes) => bytes.toString().startsWith(letter), 5000, (mine) => {
      if (mine !== true) return handOn(socket)
      socket.resume()
      socket.end(`${letter}-answered`)
    })
  interceptConnections(server, interceptor('A'))
  interceptConnections(server, interceptor('B'))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as AddressInfo).port
  t.equal(await exchange(port, 'Bxyz'), 'B-answered', 'the later interceptor examines first')
  t.equal(await exchange(port, 'Axyz'), 'A-answered', 'then hands on to the earlier one')
  t.equal(await exchange(port, 'Cxyz-and-more'), 'server:Cxyz-and-more', 'the server reads every byte, the examined ones included')
})
