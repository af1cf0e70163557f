import { createHmac, timingSafeEqual } from "node:crypto";
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
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
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
    return createHmac("sha256", this.#key).update(payload).digest().subarray(0, MAC_BYTES);
  }
}
