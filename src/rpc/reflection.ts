import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { projectPath } from "../paths.js";

function protoFiles(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return protoFiles(root, p);
    return e.name.endsWith(".proto") ? [relative(root, p)] : [];
  });
}

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) over every .proto
 * file the service ships, so grpcurl, Postman and similar tools can call it
 * without the .proto files.
 */
export function addReflection(server: Pick<grpc.Server, "addService">): void {
  const root = projectPath("proto");
  const pkg = protoLoader.loadSync(protoFiles(root).sort(), { includeDirs: [root] });
  new ReflectionService(pkg).addToServer(server);
}
