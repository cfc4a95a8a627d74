package eventbus_test

import (
	"os"
	"testing"

	"github.com/payonce/payonce/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
