// Builds a self-signed ECDSA P-256 X.509 v3 certificate with Node's crypto alone (node-forge signs RSA only).
import { createHash, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto'
import { domainToASCII } from 'node:url'
import * as der from './x509-der.js'

export interface SelfSignedRequest {
  /** A P-256 private key (crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' })). */
  privateKey: KeyObject
  commonName: string
  organization: string
  dnsNames: string[]
  ipAddresses: string[]
  notBefore: Date
  notAfter: Date
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
}

// KeyUsage bit numbers (RFC 5280 4.2.1.3).
const DIGITAL_SIGNATURE = 0
const KEY_CERT_SIGN = 5

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return der.sequence(der.oid(id), ...(critical ? [der.booleanTrue()] : []), der.octetString(value))
}

function name(commonName: string, organization: string): Buffer {
  const attribute = (id: string, value: string): Buffer => der.set(der.sequence(der.oid(id), der.utf8String(value)))
  return der.sequence(attribute(OID.commonName, commonName), attribute(OID.organization, organization))
}

/** A dNSName is IA5 (ASCII): an internationalised name goes in as its punycode (xn--) form. */
function asciiName(dns: string): string {
  if (/^[\x21-\x7e]+$/.test(dns)) return dns
  const ascii = domainToASCII(dns)
  if (!ascii) throw new Error(`not a DNS name: ${dns}`)
  return ascii
}

/** The public key's bits from a DER SubjectPublicKeyInfo (the BIT STRING after the algorithm), for the key identifier. */
function subjectPublicKey(spki: Buffer): Buffer {
  // An EC P-256 SPKI is short-form throughout: 30 59 | 30 13 <algorithm> | 03 42 00 <65 key bytes>.
  const algorithmLength = spki[3]
  const bitString = 4 + algorithmLength
  if (spki[0] !== 0x30 || spki[2] !== 0x30 || spki[bitString] !== 0x03) throw new Error('unexpected SubjectPublicKeyInfo layout')
  return spki.subarray(bitString + 3, bitString + 2 + spki[bitString + 1])
}

/** A PEM certificate: CA (usable as its own ca.crt), server authentication, the names in subjectAltName. */
export function selfSignedCertificate(request: SelfSignedRequest): string {
  const spki = createPublicKey(request.privateKey).export({ type: 'spki', format: 'der' })
  // Key identifier method 1 of RFC 5280 4.2.1.2: SHA-1 of the public key bits (an identifier, not a security measure).
  const keyId = createHash('sha1').update(subjectPublicKey(spki)).digest()
  const subject = name(request.commonName, request.organization)
  const altNames = der.sequence(
    ...request.dnsNames.map((dns) => der.tlv(0x82, Buffer.from(asciiName(dns), 'ascii'))),
    ...request.ipAddresses.map((ip) => der.tlv(0x87, der.ipBytes(ip))),
  )
  const algorithm = der.sequence(der.oid(OID.ecdsaWithSha256))
  // A positive 128-bit serial (first byte 0x01..0x7f), random so a regenerated certificate never repeats one.
  const serial = randomBytes(16)
  serial[0] = (serial[0] & 0x7f) | 0x01
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)), // v3
    der.unsignedInteger(serial),
    algorithm,
    subject, // issuer: itself
    der.sequence(der.time(request.notBefore), der.time(request.notAfter)),
    subject,
    spki,
    der.explicit(
      3,
      der.sequence(
        extension(OID.basicConstraints, true, der.sequence(der.booleanTrue())),
        // No keyEncipherment: an EC key signs the handshake, it does not decrypt a premaster secret.
        extension(OID.keyUsage, true, der.namedBits([DIGITAL_SIGNATURE, KEY_CERT_SIGN])),
        extension(OID.extKeyUsage, false, der.sequence(der.oid(OID.serverAuth))),
        extension(OID.subjectAltName, false, altNames),
        extension(OID.subjectKeyIdentifier, false, der.octetString(keyId)),
        // Strict verifiers (OpenSSL's X509_STRICT, Python 3.13's default) look for it; for a self-signed one it equals the subject's.
        extension(OID.authorityKeyIdentifier, false, der.sequence(der.tlv(0x80, keyId))),
      ),
    ),
  )
  const signature = sign('sha256', tbs, { key: request.privateKey, dsaEncoding: 'der' })
  const certificate = der.sequence(tbs, algorithm, der.bitString(signature))
  const lines = certificate.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`
}
