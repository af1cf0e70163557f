import { configureTextEncoding, getTextEncoding } from "@bufbuild/protobuf/wire";

/** What a request string holds when its bytes were not valid UTF-8: a lone surrogate, which valid UTF-8 never decodes to. */
const MALFORMED = "\uD800";

let installed = false;

/**
 * Decodes request strings that are not valid UTF-8 (which protobuf's parser
 * refuses, and Connect then answers INTERNAL before any interceptor runs) to
 * their text with a lone surrogate appended, so that the call reaches the
 * interceptors, where `interceptors/well-formed-text.ts` refuses it as
 * INVALID_ARGUMENT naming the field, on both ports alike. Valid text decodes
 * as before. Process-wide: protobuf-es keeps one text encoding per copy of
 * the library.
 */
export function markMalformedUtf8(): void {
  if (installed) return;
  installed = true;
  const encoding = getTextEncoding();
  configureTextEncoding({
    ...encoding,
    decodeUtf8(bytes: Uint8Array, strict?: boolean): string {
      if (!strict) return encoding.decodeUtf8(bytes, false);
      try {
        return encoding.decodeUtf8(bytes, true);
      } catch {
        return `${encoding.decodeUtf8(bytes, false)}${MALFORMED}`;
      }
    },
  });
}
