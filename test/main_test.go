package test

import (
	"fmt"
	"os"
	"testing"

	"github.com/ehsaniara/joblet/test/harness"
)

// moto is shared by the package's tests; each test resets it.
var moto *harness.Moto

func TestMain(m *testing.M) {
	var err error
	moto, err = harness.StartMoto()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	moto.Stop()
	if peopleMoto != nil {
		peopleMoto.Stop()
	}
	os.Exit(code)
}
