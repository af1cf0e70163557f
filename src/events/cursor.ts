import { hash, timingSafeEqual } from "node:crypto";
import { invalidArgument } from "../api/reasons.ts";
import type { EventPosition } from "./model.ts";

const VERSION = 1;
const MAC_BYTES = 12;
const LENGTH = 1 + 8 + 8 + MAC_BYTES;

/**
 * Cursors as callers hold them: a position in the log, signed with the log's
 * key (kept in the database, the same for every replica). A cursor cannot be
 * forged or altered to skip events: anything but a cursor this service
 * issued fails INVALID_ARGUMENT.
 */
export class CursorCodec {
  // HMAC-SHA256 (RFC 2104) from the key's two padded blocks, computed once:
  // a catch-up signs every event's cursor, and createHmac per cursor cost
  // several times more than the two one-shot hashes.
  readonly #inner: Buffer;
  readonly #outer: Buffer;

  constructor(key: Buffer) {
    const block = Buffer.alloc(64);
    (key.length > 64 ? hash("sha256", key, "buffer") : key).copy(block);
    this.#inner = Buffer.from(block.map((byte) => byte ^ 0x36));
    this.#outer = Buffer.from(block.map((byte) => byte ^ 0x5c));
  }

  encode(position: EventPosition): string {
    const bytes = Buffer.alloc(LENGTH);
    bytes.writeUInt8(VERSION, 0);
    bytes.writeBigInt64BE(position.xid, 1);
    bytes.writeBigInt64BE(position.id, 9);
    this.mac(bytes.subarray(0, 17)).copy(bytes, 17);
    return bytes.toString("base64url");
  }

  /** The position `cursor` names; throws INVALID_ARGUMENT naming `field` unless this service issued it. */
  decode(cursor: string, field: string): EventPosition {
    const bytes = cursor.length <= 64 ? Buffer.from(cursor, "base64url") : Buffer.alloc(0);
    if (bytes.length !== LENGTH || bytes.toString("base64url") !== cursor || bytes.readUInt8(0) !== VERSION) {
      throw invalidArgument(field, "is not a cursor returned by ListEvents or StreamEvents");
    }
    if (!timingSafeEqual(this.mac(bytes.subarray(0, 17)), bytes.subarray(17))) {
      throw invalidArgument(field, "is not a cursor issued by this service (altered or forged)");
    }
    const position = { xid: bytes.readBigInt64BE(1), id: bytes.readBigInt64BE(9) };
    if (position.xid < 0n || position.id < 0n) throw invalidArgument(field, "is not a cursor returned by ListEvents or StreamEvents");
    return position;
  }

  private mac(payload: Buffer): Buffer {
    const inner = hash("sha256", Buffer.concat([this.#inner, payload]), "buffer");
    return hash("sha256", Buffer.concat([this.#outer, inner]), "buffer").subarray(0, MAC_BYTES);
  }
}
