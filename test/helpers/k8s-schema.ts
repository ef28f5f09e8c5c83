// Checks Kubernetes documents against the API schemas shipped by kubernetes-models: its ajv validators (types, required keys, enums, formats) and, for unknown fields (which its JSON schemas allow), its TypeScript types from the same OpenAPI spec.
import { resolve } from 'node:path'
import ts from 'typescript'
import type { KubeDocument } from './kustomize.js'

interface ModelClass {
  new (data: unknown): { validate(): void }
}

/** The kubernetes-models module of an apiVersion and kind, e.g. kubernetes-models/apps/v1/Deployment. */
function modelModule(doc: KubeDocument): string {
  if (!/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/.test(doc.apiVersion) || !/^[A-Z][A-Za-z]+$/.test(doc.kind)) {
    throw new Error(`apiVersion ${JSON.stringify(doc.apiVersion)} / kind ${JSON.stringify(doc.kind)} is not a Kubernetes type name`)
  }
  return `kubernetes-models/${doc.apiVersion}/${doc.kind}`
}

/** Problems the API schema of the document's kind finds (wrong types, missing required keys, bad enums); an unknown kind is one. */
export async function schemaProblems(doc: KubeDocument): Promise<string[]> {
  let model: ModelClass | undefined
  try {
    const module = (await import(modelModule(doc))) as Record<string, unknown>
    model = module[doc.kind] as ModelClass | undefined
  } catch (error) {
    return [`no Kubernetes API schema for ${doc.apiVersion} ${doc.kind} (${(error as Error).message.split('\n')[0]})`]
  }
  if (!model) return [`no Kubernetes API schema for ${doc.apiVersion} ${doc.kind}`]
  try {
    new model(doc).validate()
    return []
  } catch (error) {
    return (error as Error).message.split(', data').map((part, index) => (index === 0 ? part : `data${part}`))
  }
}

/**
 * Unknown fields and type mismatches by the TypeScript types of each kind: every document is written
 * as an object literal of its kind's interface (excess-property checks reach every nesting level)
 * and type-checked in memory. Answers one list of problems per document, in order.
 */
export function typeProblems(docs: KubeDocument[], root: string): string[][] {
  const file = resolve(root, 'test', '__kubernetes_documents__.ts')
  const lines: string[] = []
  const starts: number[] = []
  docs.forEach((doc, index) => {
    lines.push(`import type { I${doc.kind} as T${index} } from ${JSON.stringify(modelModule(doc))}`)
  })
  docs.forEach((doc, index) => {
    starts.push(lines.length)
    lines.push(...`export const d${index}: T${index} = ${JSON.stringify(doc, null, 2)}`.split('\n'))
  })
  const source = lines.join('\n')
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, language, onError, create) =>
    resolve(name) === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, onError, create)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => resolve(name) === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  const problems: string[][] = docs.map(() => [])
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')
    if (!diagnostic.file || resolve(diagnostic.file.fileName) !== file || diagnostic.start === undefined) {
      throw new Error(`type-checking the documents failed outside them: ${message}`)
    }
    const line = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line
    let owner = starts.length - 1
    while (owner > 0 && (starts[owner] as number) > line) owner--
    if (line < (starts[0] ?? 0)) throw new Error(`no Kubernetes type for a document: ${message}`)
    problems[owner]?.push(`${message} (at: ${(lines[line] ?? '').trim()})`)
  }
  return problems
}
