"""A short scenario against the referral service from a Python client generated
from proto/ (protoc and grpc_python_plugin from Debian, run by python3-grpcio).

Usage: scenario.py GENERATED_DIR ADDRESS PROGRAM_KEY
Prints one JSON object with what it observed.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
address, program_key = sys.argv[2], sys.argv[3]

import grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from referral.v1 import referral_code_service_pb2 as api  # noqa: E402
from referral.v1 import referral_code_service_pb2_grpc as api_grpc  # noqa: E402
from referral.v1 import resources_pb2 as resources  # noqa: E402


def error_info(error):
    """The google.rpc.ErrorInfo carried in grpc-status-details-bin."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata)}
    return None


observed = {}
with grpc.insecure_channel(address) as channel:
    stub = api_grpc.ReferralCodeServiceStub(channel)
    program = stub.CreateProgram(api.CreateProgramRequest(program=resources.Program(
        program_key=program_key,
        name="Python " + program_key,
        reward_kind=resources.REWARD_KIND_FIXED,
        reward_amount_minor=2500,
        reward_currency="EUR",
    )), timeout=10).program
    observed["program_key"] = program.program_key
    code = stub.CreateCode(api.CreateCodeRequest(program_key=program_key, user_id="py-referrer"), timeout=10).code
    observed["code"] = code.code
    valid = stub.ValidateCode(api.ValidateCodeRequest(code=code.code.lower(), referred_user_id="py-friend"), timeout=10)
    observed["valid"] = valid.valid
    observed["reward_amount_minor"] = valid.reward.amount_minor
    referral = stub.TrackReferral(api.TrackReferralRequest(
        code=code.code, referred_user_id="py-friend", transaction_id="py-order-1", currency="EUR",
    ), timeout=10).referral
    observed["amount_earned_minor"] = referral.amount_earned_minor
    observed["payout_status"] = resources.PayoutStatus.Name(referral.payout_status)
    try:
        stub.TrackReferral(api.TrackReferralRequest(
            code=code.code, referred_user_id="py-referrer", transaction_id="py-order-2",
        ), timeout=10)
        observed["error"] = None
    except grpc.RpcError as error:
        observed["error"] = {"code": error.code().name, "info": error_info(error)}

    # A consumer loop: follow the program's events and resume from the last
    # cursor processed (a real consumer stores it with what it did).
    cursor = ""
    seen = []
    stream = stub.StreamEvents(api.StreamEventsRequest(after_cursor=cursor, program_key=program_key), timeout=10)
    for batch in stream:
        seen.extend(resources.EventType.Name(event.type) for event in batch.events)
        cursor = batch.cursor
        if len(seen) >= 3:
            stream.cancel()
            break
    resumed = stub.ListEvents(api.ListEventsRequest(after_cursor=cursor, program_key=program_key), timeout=10)
    observed["events"] = seen
    observed["events_after_cursor"] = len(resumed.events)

print(json.dumps(observed))
