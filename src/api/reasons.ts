import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequest_FieldViolationSchema,
  BadRequestSchema,
  ErrorInfoSchema,
} from "../gen/google/rpc/error_details_pb.js";

/** The `google.rpc.ErrorInfo` domain of every error this service sends. */
const ERROR_DOMAIN = "referral.v1";

/**
 * Every reason a caller can receive, and the gRPC code it travels with. This is
 * the one table that maps domain errors to the wire; reasons are a stable
 * contract with clients in every language.
 */
const reasonCodes = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  PROGRAM_NOT_FOUND: Code.NotFound,
  CODE_NOT_FOUND: Code.NotFound,
  REFERRAL_NOT_FOUND: Code.NotFound,
  PAYOUT_NOT_FOUND: Code.NotFound,
  PAYOUT_ACCOUNT_NOT_FOUND: Code.NotFound,
  PROGRAM_KEY_TAKEN: Code.AlreadyExists,
  CODE_TAKEN: Code.AlreadyExists,
  IDEMPOTENCY_KEY_REUSED: Code.AlreadyExists,
  PROGRAM_INACTIVE: Code.FailedPrecondition,
  CODE_INACTIVE: Code.FailedPrecondition,
  CODE_SUSPENDED: Code.FailedPrecondition,
  CODE_EXPIRED: Code.FailedPrecondition,
  CODE_EXHAUSTED: Code.FailedPrecondition,
  CODE_LIMIT_REACHED: Code.FailedPrecondition,
  CODE_SPACE_EXHAUSTED: Code.FailedPrecondition,
  MAX_USES_BELOW_USES_COUNT: Code.FailedPrecondition,
  SELF_REFERRAL: Code.FailedPrecondition,
  ALREADY_REFERRED: Code.FailedPrecondition,
  ALREADY_CONVERTED: Code.FailedPrecondition,
  CONVERSION_WINDOW_CLOSED: Code.FailedPrecondition,
  REWARD_LIMIT_REACHED: Code.FailedPrecondition,
  BUDGET_EXHAUSTED: Code.FailedPrecondition,
  BUDGET_BELOW_GRANTED: Code.FailedPrecondition,
  CURRENCY_MISMATCH: Code.FailedPrecondition,
  INVALID_PAYOUT_TRANSITION: Code.FailedPrecondition,
  NOT_YET_PAYABLE: Code.FailedPrecondition,
  REFERRAL_IN_PAYOUT: Code.FailedPrecondition,
  INVALID_PAYOUT_STATE: Code.FailedPrecondition,
  PAYOUT_ACCOUNT_INVALID: Code.FailedPrecondition,
  PAYOUT_PROVIDER_NOT_CONFIGURED: Code.FailedPrecondition,
  PAYOUT_PROVIDER_UNAVAILABLE: Code.Unavailable,
  CURSOR_EXPIRED: Code.OutOfRange,
  CONFLICT: Code.Aborted,
  UNAUTHENTICATED: Code.Unauthenticated,
  PERMISSION_DENIED: Code.PermissionDenied,
  OVERLOADED: Code.ResourceExhausted,
  DATABASE_UNAVAILABLE: Code.Unavailable,
  DEADLINE_EXCEEDED: Code.DeadlineExceeded,
  INTERNAL: Code.Internal,
  NOT_IMPLEMENTED: Code.Unimplemented,
} as const satisfies Record<string, Code>;

export type Reason = keyof typeof reasonCodes;

/**
 * An error the service means to send to its caller: a reason from the table
 * above, a message safe to show, and metadata naming the field or entity.
 */
export class DomainError extends Error {
  readonly reason: Reason;
  readonly metadata: Readonly<Record<string, string>>;

  constructor(reason: Reason, message: string, metadata: Record<string, string> = {}) {
    // Messages and metadata may quote the caller's words (a map key naming
    // a field), which can hold a lone surrogate: sent as it is, it cannot be
    // encoded in a header (grpc-js then never answers the call).
    super(message.toWellFormed());
    this.name = "DomainError";
    this.reason = reason;
    this.metadata = Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, value.toWellFormed()]));
  }

  get code(): Code {
    return reasonCodes[this.reason];
  }
}

/** A request field that failed validation. */
export type FieldViolation = { field: string; description: string };

/** At most this many violations travel in BadRequest: error details go in trailers, whose size is limited. */
const MAX_VIOLATIONS = 20;

/** INVALID_ARGUMENT naming the first bad field; the first violations go in BadRequest. */
export class InvalidArgumentError extends DomainError {
  readonly violations: readonly FieldViolation[];

  constructor(violations: readonly [FieldViolation, ...FieldViolation[]]) {
    const shown = violations
      .slice(0, MAX_VIOLATIONS)
      .map((v) => ({ field: v.field.slice(0, 200).toWellFormed(), description: v.description.slice(0, 200).toWellFormed() }));
    const first = shown[0] as FieldViolation;
    super("INVALID_ARGUMENT", `${first.field}: ${first.description}`, { field: first.field });
    this.violations = shown;
  }
}

export function invalidArgument(field: string, description: string): InvalidArgumentError {
  return new InvalidArgumentError([{ field, description }]);
}

/** Turns a DomainError into the ConnectError the caller receives. */
export function toConnectError(error: DomainError): ConnectError {
  const details = [
    {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, {
        reason: error.reason,
        domain: ERROR_DOMAIN,
        metadata: { ...error.metadata },
      }),
    },
  ];
  if (error instanceof InvalidArgumentError) {
    details.push({
      desc: BadRequestSchema,
      value: create(BadRequestSchema, {
        fieldViolations: error.violations.map((v) => create(BadRequest_FieldViolationSchema, v)),
      }),
    } as never);
  }
  return new ConnectError(error.message, error.code, undefined, details);
}
