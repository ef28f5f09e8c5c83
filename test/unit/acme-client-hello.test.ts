// ClientHello reading: server name and ALPN from real hellos (Node and OpenSSL), split and multi-record hellos, non-TLS input.
import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer, type Socket } from 'node:net'
import { connect } from 'node:tls'
import { readClientHello } from '../../src/tls/acme/client-hello.js'

/** The first bytes a client sends to a TCP server that never answers. */
function capture(send: (port: number) => () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket: Socket) => {
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk)
        const data = Buffer.concat(chunks)
        if (readClientHello(data) !== 'incomplete' || data.length > 65536) {
          socket.destroy()
          server.close()
          stop()
          resolve(data)
        }
      })
    })
    let stop: () => void = () => undefined
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (typeof address !== 'object' || !address) return reject(new Error('no address'))
      stop = send(address.port)
    })
  })
}

function nodeHello(servername: string, alpn: string[]): Promise<Buffer> {
  return capture((port) => {
    const socket = connect({ host: '127.0.0.1', port, servername, ALPNProtocols: alpn, rejectUnauthorized: false })
    socket.on('error', () => undefined)
    return () => socket.destroy()
  })
}

function opensslHello(servername: string, alpn: string): Promise<Buffer> {
  return capture((port) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-alpn', alpn], { stdio: ['pipe', 'ignore', 'ignore'] })
    return () => child.kill()
  })
}

t.test('Node and OpenSSL hellos: server name and ALPN list', async (t) => {
  const node = readClientHello(await nodeHello('Registry.Example.COM', ['acme-tls/1']))
  t.same(node, { serverName: 'registry.example.com', alpn: ['acme-tls/1'] })
  const several = readClientHello(await nodeHello('a.test', ['h2', 'http/1.1']))
  t.same(several, { serverName: 'a.test', alpn: ['h2', 'http/1.1'] })
  const openssl = readClientHello(await opensslHello('b.test', 'acme-tls/1'))
  t.same(openssl, { serverName: 'b.test', alpn: ['acme-tls/1'] })
  const noAlpn = readClientHello(await nodeHello('c.test', []))
  t.same(noAlpn, { serverName: 'c.test', alpn: [] })
})

t.test('a hello arriving in pieces is incomplete until its last byte', async (t) => {
  const hello = await nodeHello('split.test', ['acme-tls/1'])
  for (const cut of [1, 4, 5, 6, 40, hello.length - 1]) t.equal(readClientHello(hello.subarray(0, cut)), 'incomplete', `first ${cut} bytes`)
  t.same(readClientHello(hello), { serverName: 'split.test', alpn: ['acme-tls/1'] })
})

t.test('a hello spread over several TLS records is joined', async (t) => {
  const hello = await nodeHello('records.test', ['acme-tls/1'])
  const message = hello.subarray(5, 5 + hello.readUInt16BE(3))
  const record = (body: Buffer): Buffer => Buffer.concat([Buffer.from([22, 3, 1, body.length >> 8, body.length & 255]), body])
  const split = Buffer.concat([record(message.subarray(0, 3)), record(message.subarray(3, 60)), record(message.subarray(60))])
  t.same(readClientHello(split), { serverName: 'records.test', alpn: ['acme-tls/1'] })
  t.equal(readClientHello(split.subarray(0, 20)), 'incomplete')
})

t.test('anything else is not a hello', async (t) => {
  t.equal(readClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'not-tls')
  t.equal(readClientHello(Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0])), 'not-tls', 'a ServerHello')
  t.equal(readClientHello(Buffer.from([22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3])), 'not-tls', 'a truncated ClientHello body')
})
