// Command scenario runs a short scenario against the referral service from a
// Go client generated from proto/ (protoc, protoc-gen-go and
// protoc-gen-go-grpc from Debian, built against Debian's grpc-go and genproto
// in GOPATH mode: see test/go-client.test.ts).
//
// Usage: scenario ADDRESS PROGRAM_KEY
//
// It prints one JSON object with what it observed. Every call carries its own
// deadline (context.WithTimeout).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	// Generated at test time into a temporary GOPATH; the import path is
	// given to protoc-gen-go with M options, as the protos set no go_package.
	referralv1 "referralgen/referral/v1"
)

const callTimeout = 10 * time.Second

type errorInfo struct {
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata"`
}

type observedError struct {
	Code string     `json:"code"`
	Info *errorInfo `json:"info"`
}

type observed struct {
	ProgramKey        string         `json:"program_key"`
	Code              string         `json:"code"`
	Valid             bool           `json:"valid"`
	RewardAmountMinor int64          `json:"reward_amount_minor"`
	AmountEarnedMinor int64          `json:"amount_earned_minor"`
	PayoutStatus      string         `json:"payout_status"`
	Error             *observedError `json:"error"`
}

// call runs one RPC under its own deadline.
func call[T any](rpc func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return rpc(ctx)
}

// errorInfoOf returns the google.rpc.ErrorInfo carried in the status details
// (grpc-status-details-bin), if any.
func errorInfoOf(st *status.Status) *errorInfo {
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			return &errorInfo{Reason: info.GetReason(), Domain: info.GetDomain(), Metadata: info.GetMetadata()}
		}
	}
	return nil
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "scenario: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: scenario ADDRESS PROGRAM_KEY")
	}
	address, programKey := os.Args[1], os.Args[2]

	dialCtx, cancelDial := context.WithTimeout(context.Background(), callTimeout)
	conn, err := grpc.DialContext(dialCtx, address, grpc.WithInsecure(), grpc.WithBlock())
	cancelDial()
	if err != nil {
		fail("dial %s: %v", address, err)
	}
	defer conn.Close()
	client := referralv1.NewReferralCodeServiceClient(conn)
	var out observed

	created, err := call(func(ctx context.Context) (*referralv1.CreateProgramResponse, error) {
		return client.CreateProgram(ctx, &referralv1.CreateProgramRequest{Program: &referralv1.Program{
			ProgramKey:        programKey,
			Name:              "Go " + programKey,
			RewardKind:        referralv1.RewardKind_REWARD_KIND_FIXED,
			RewardAmountMinor: 2500,
			RewardCurrency:    "EUR",
		}})
	})
	if err != nil {
		fail("CreateProgram: %v", err)
	}
	out.ProgramKey = created.GetProgram().GetProgramKey()

	code, err := call(func(ctx context.Context) (*referralv1.CreateCodeResponse, error) {
		return client.CreateCode(ctx, &referralv1.CreateCodeRequest{ProgramKey: programKey, UserId: "go-referrer"})
	})
	if err != nil {
		fail("CreateCode: %v", err)
	}
	out.Code = code.GetCode().GetCode()

	valid, err := call(func(ctx context.Context) (*referralv1.ValidateCodeResponse, error) {
		return client.ValidateCode(ctx, &referralv1.ValidateCodeRequest{Code: strings.ToLower(out.Code), ReferredUserId: "go-friend"})
	})
	if err != nil {
		fail("ValidateCode: %v", err)
	}
	out.Valid = valid.GetValid()
	out.RewardAmountMinor = valid.GetReward().GetAmountMinor()

	tracked, err := call(func(ctx context.Context) (*referralv1.TrackReferralResponse, error) {
		return client.TrackReferral(ctx, &referralv1.TrackReferralRequest{
			Code: out.Code, ReferredUserId: "go-friend", TransactionId: "go-order-1", Currency: "EUR",
		})
	})
	if err != nil {
		fail("TrackReferral: %v", err)
	}
	out.AmountEarnedMinor = tracked.GetReferral().GetAmountEarnedMinor()
	out.PayoutStatus = tracked.GetReferral().GetPayoutStatus().String()

	// The code's owner referring themselves: refused.
	_, err = call(func(ctx context.Context) (*referralv1.TrackReferralResponse, error) {
		return client.TrackReferral(ctx, &referralv1.TrackReferralRequest{
			Code: out.Code, ReferredUserId: "go-referrer", TransactionId: "go-order-2",
		})
	})
	if err != nil {
		st, ok := status.FromError(err)
		if !ok {
			fail("TrackReferral (self-referral): not a gRPC status: %v", err)
		}
		out.Error = &observedError{Code: codeName(st), Info: errorInfoOf(st)}
	}

	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("encode: %v", err)
	}
}

// codeName spells a status code as the gRPC specification does
// (FAILED_PRECONDITION), not as codes.Code's String (FailedPrecondition).
func codeName(st *status.Status) string {
	var spelled []rune
	for i, r := range st.Code().String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			spelled = append(spelled, '_')
		}
		spelled = append(spelled, r)
	}
	return strings.ToUpper(string(spelled))
}
