import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { MetadataHeaders } from "../src/transport/grpc-js-metadata.ts";

describe("a grpc-js call's metadata as Headers", () => {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", "Bearer abc");
  metadata.set("grpc-timeout", "500m");
  metadata.set("trace-bin", Buffer.from([1, 2, 3]));

  it("answers get and has case-insensitively, as Headers does", () => {
    const header = new MetadataHeaders(metadata);
    expect(header.get("Authorization")).toBe("Bearer abc");
    expect(header.has("GRPC-TIMEOUT")).toBe(true);
    expect(header.get("missing")).toBeNull();
  });

  it("leaves binary entries out and lists the rest sorted, like a Headers built from the same text entries", () => {
    const header = new MetadataHeaders(metadata);
    const reference = new Headers({ "grpc-timeout": "500m", authorization: "Bearer abc" });
    expect([...header]).toEqual([...reference]);
    expect([...header.keys()]).toEqual([...reference.keys()]);
    expect(header.has("trace-bin")).toBe(false);
  });

  it("can be changed like Headers: set, append, delete", () => {
    const header = new MetadataHeaders(metadata);
    header.set("X-One", "1");
    header.append("x-one", "2");
    header.delete("authorization");
    expect(header.get("x-one")).toBe("1, 2");
    expect(header.get("authorization")).toBeNull();
    const reference = new Headers({ "grpc-timeout": "500m", authorization: "Bearer abc" });
    reference.set("X-One", "1");
    reference.append("x-one", "2");
    reference.delete("authorization");
    expect([...header]).toEqual([...reference]);
    // The call's own metadata is read, never written.
    expect(metadata.get("authorization")).toEqual(["Bearer abc"]);
  });
});
