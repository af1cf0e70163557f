/**
 * pgbench scripts made from the repositories' own statements, so that pgbench
 * runs exactly the service's SQL: the limit each measurement is compared with.
 */
import { type Captured, captureStatements } from "../src/db/capture-statements.ts";
import { insertCodes } from "../src/codes/repository.ts";
import { findConversionContexts, recordConversion } from "../src/referrals/repository.ts";

/**
 * The statement's text for pgbench: each parameter replaced by the pgbench
 * expression its value stands for (values are unique markers), comments left out.
 * An array parameter takes the expression of the whole array (`[marker]` in
 * `expressions`) if there is one, else is the array of its one element's expression.
 */
function forPgbench({ sql, values }: Captured, expressions: ReadonlyMap<string, string>): string {
  const text = sql
    .replaceAll("$slonik_", "$")
    .split("\n")
    .filter((line) => !line.trim().startsWith("--"))
    .join("\n")
    .trim();
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const value = values[Number(n) - 1];
    const whole = Array.isArray(value) ? expressions.get(`[${value.join(",")}]`) : undefined;
    if (whole !== undefined) return `(${whole})`;
    const element = Array.isArray(value) && value.length === 1 ? value[0] : value;
    const expression = element === null ? "NULL" : expressions.get(String(element));
    if (expression === undefined) throw new Error(`no pgbench expression for parameter $${n} (${String(value)})`);
    return element === value ? `(${expression})` : `ARRAY[${expression}]`;
  });
}

/**
 * The pgbench script for (2): one TrackReferral as the service sends it, the
 * two statements of src/referrals/repository.ts taken from the repository
 * itself, so pgbench runs exactly the service's SQL: findConversionContexts
 * for the one conversion (its row `\gset` into variables), then recordConversion, each its own
 * transaction as src/referrals/track.ts sends them, both prepared with
 * `pgbench -M prepared` as the service prepares them. It is a referred user's
 * first conversion in the bench's ONE_TIME FIXED program (no budget, no cap),
 * through one of the `:codes` seeded codes BENCH00001…, for 1,000 (minor units)
 * earning the program's 100, as the bench's own TrackReferral calls are.
 */
export async function conversionPgbenchScript(): Promise<string> {
  const code = "'BENCH' || lpad(:k::text, 5, '0')";
  const transactionId = "'pgb-' || :n";
  const referredUserId = "'pgb-user-' || :n";

  const read = captureStatements();
  await findConversionContexts(read.db, [{ code: "\u0001code", transactionId: "\u0001transaction", referredUserId: "\u0001referred" }]);
  const readExpressions = new Map([
    ["\u0001code", code],
    ["\u0001transaction", transactionId],
    ["\u0001referred", referredUserId],
  ]);

  const write = captureStatements();
  await recordConversion(write.db, {
    programId: 7_000_000_001n,
    programKey: "unused",
    codeId: 7_000_000_002n,
    code: "UNUSED",
    referrerUserId: "\u0001referrer",
    referredUserId: "\u0001referred",
    transactionId: "\u0001transaction",
    transactionAmountMinor: 7_000_000_003n,
    amountEarnedMinor: 7_000_000_004n,
    refereeRewardMinor: 7_000_000_006n,
    currency: "\u0001currency",
    convertedAt: new Date(1_111_000),
    payableAt: new Date(2_222_000),
    firstConversion: true,
    // A new referred user: their first conversion takes a use (both are :first).
    takesUse: true,
    programVersion: 7_000_000_005n,
    rewardSlot: null,
    metadata: {},
  });
  const writeExpressions = new Map([
    ["7000000001", ":program_id"],
    ["7000000002", ":code_id"],
    ["\u0001referrer", ":referrer_user_id"],
    ["\u0001referred", referredUserId],
    ["\u0001transaction", transactionId],
    ["7000000003", ":transaction_amount"],
    ["7000000004", ":amount"],
    ["7000000005", ":program_version"],
    ["7000000006", "0"],
    ["\u0001currency", ":reward_currency"],
    ["1111", "extract(epoch from now())"],
    ["2222", "extract(epoch from now())"],
    ["true", ":first"],
    ["{}", "'{}'"],
  ]);

  const [context, conversion] = [read.taken[0], write.taken[0]];
  if (context === undefined || conversion === undefined) throw new Error("the repository sent no statement");
  return [
    "\\set n random(1, 9000000000000000000)",
    "\\set k random(1, :codes)",
    // Sent as parameters, as the service sends them (literals would be folded into the plan).
    "\\set transaction_amount 1000",
    "\\set amount 100",
    "\\set first true",
    `${forPgbench(context, readExpressions)} \\gset`,
    `${forPgbench(conversion, writeExpressions)};`,
    "",
  ].join("\n");
}

/**
 * The pgbench script for (3): one BatchCreateCodes as the service sends it,
 * insertCodes of src/codes/repository.ts for `size` new users of the program
 * `:program_id`, prepared (`pgbench -M prepared`) as the service prepares it.
 * The users are distinct in every transaction; the codes are random, 13
 * upper-case hex digits, so they land all over the code index as the
 * service's random codes do.
 */
export async function batchPgbenchScript(size: number): Promise<string> {
  const insert = captureStatements();
  await insertCodes(insert.db, { programId: 7_000_000_001n, userIds: ["\u0001users"], codes: ["\u0001codes"] }, new Date(1_111_000));
  const expressions = new Map([
    ["7000000001", ":program_id"],
    ["1111", "extract(epoch from now())"],
    ["[\u0001users]", `ARRAY(SELECT 'pgb-' || :n || '-' || i FROM generate_series(1, ${size}) AS i)`],
    ["[\u0001codes]", `ARRAY(SELECT upper(lpad(to_hex((random() * 4503599627370496)::bigint), 13, '0')) FROM generate_series(1, ${size}))`],
  ]);
  const [statement] = insert.taken;
  if (statement === undefined) throw new Error("the repository sent no statement");
  return ["\\set n random(1, 9000000000000000000)", `${forPgbench(statement, expressions)};`, ""].join("\n");
}

if (import.meta.main) process.stdout.write(process.argv[2] === "batch" ? await batchPgbenchScript(1000) : await conversionPgbenchScript());
