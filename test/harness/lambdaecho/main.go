// Command lambdaecho is a Lambda handler for the harness's own test: it
// answers the event it got, with its arguments and the environment
// variable ECHO_ENV, and fails when the event asks it to.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Say  string `json:"say"`
	Fail bool   `json:"fail"`
}

type answer struct {
	Said string   `json:"said"`
	Args []string `json:"args"`
	Env  string   `json:"env"`
}

func main() {
	lambda.Start(func(_ context.Context, e event) (answer, error) {
		if e.Fail {
			return answer{}, errors.New("asked to fail: " + e.Say)
		}
		return answer{Said: e.Say, Args: os.Args[1:], Env: os.Getenv("ECHO_ENV")}, nil
	})
}
