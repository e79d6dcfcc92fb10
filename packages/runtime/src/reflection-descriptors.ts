// The descriptors gRPC reflection serves. @grpc/reflection indexes whatever `fileDescriptorProtos`
// (serialized FileDescriptorProto messages) it finds in a package definition. Handing it the bytes
// buf produced, untouched, matters: @grpc/proto-loader's loadFileDescriptorSetFromBuffer rebuilds
// descriptors through protobufjs, which rewrites map fields with relative type names that grpcurl
// (Go's protodesc) rejects ("… is an invalid map: message and field must be declared in the same
// scope"), so every RPC of a file with a map field became undescribable.
import type { PackageDefinition } from '@grpc/proto-loader';

/**
 * Splits a serialized FileDescriptorSet (`repeated FileDescriptorProto file = 1;`) into the bytes
 * of each file, exactly as written, by walking the protobuf wire format.
 */
export function splitFileDescriptorSet(set: Uint8Array): Buffer[] {
  const files: Buffer[] = [];
  let offset = 0;
  const readVarint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (offset >= set.length) throw new Error('FileDescriptorSet: truncated varint');
      const byte = set[offset++]!;
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
      if (shift > 49) throw new Error('FileDescriptorSet: varint too long');
    }
  };
  while (offset < set.length) {
    const tag = readVarint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (wireType !== 2) throw new Error(`FileDescriptorSet: unexpected wire type ${wireType} for field ${field}`);
    const length = readVarint();
    if (offset + length > set.length) throw new Error('FileDescriptorSet: truncated field');
    if (field === 1) files.push(Buffer.from(set.subarray(offset, offset + length)));
    offset += length;
  }
  return files;
}

/** A package definition carrying only raw file descriptors, the shape @grpc/reflection reads. */
export function rawDescriptorPackage(name: string, fileDescriptorProtos: Buffer[]): PackageDefinition {
  return { [name]: { format: 'raw-file-descriptors', fileDescriptorProtos } } as unknown as PackageDefinition;
}
