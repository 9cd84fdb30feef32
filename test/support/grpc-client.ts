import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { projectPath } from "../../src/paths.js";

/**
 * Loads the .proto files at run time, as a caller in another language would
 * (no generated TypeScript), and returns the package tree.
 */
export function loadProtos(): grpc.GrpcObject {
  const def = protoLoader.loadSync(
    [
      "grpc/health/v1/health.proto",
      "authz/v1/permission_service.proto",
      "authz/v1/admin_service.proto",
      "authz/v1/directory_service.proto",
      "authz/v1/rate_limit_service.proto",
      "authz/v1/watch_service.proto",
    ],
    { includeDirs: [projectPath("proto")], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(def);
}

type Ctor = new (address: string, creds: grpc.ChannelCredentials) => grpc.Client;

export function client(tree: grpc.GrpcObject, fqName: string, port: number): grpc.Client & Record<string, Function> {
  let node: unknown = tree;
  for (const part of fqName.split(".")) node = (node as Record<string, unknown>)[part];
  const C = node as Ctor;
  return new C(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
}

export function unary<T>(c: grpc.Client & Record<string, Function>, method: string, req: unknown, md = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as Function).call(c, req, md, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}
