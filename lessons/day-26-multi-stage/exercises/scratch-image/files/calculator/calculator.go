// A small calculator: `calculator 6 '*' 7` prints 42. Without arguments it reads
// expressions like `6 * 7` from standard input, one a line, until `exit`.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func calculate(a float64, op string, b float64) (float64, error) {
	switch op {
	case "+":
		return a + b, nil
	case "-":
		return a - b, nil
	case "*", "x":
		return a * b, nil
	case "/":
		if b == 0 {
			return 0, fmt.Errorf("division by zero")
		}
		return a / b, nil
	}
	return 0, fmt.Errorf("unknown operator %q (use + - * /)", op)
}

func evaluate(fields []string) (string, error) {
	if len(fields) != 3 {
		return "", fmt.Errorf("write an expression as: number operator number")
	}
	a, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", fmt.Errorf("%q is not a number", fields[0])
	}
	b, err := strconv.ParseFloat(fields[2], 64)
	if err != nil {
		return "", fmt.Errorf("%q is not a number", fields[2])
	}
	result, err := calculate(a, fields[1], b)
	if err != nil {
		return "", err
	}
	return strconv.FormatFloat(result, 'f', -1, 64), nil
}

func main() {
	if len(os.Args) > 1 {
		out, err := evaluate(os.Args[1:])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(out)
		return
	}
	fmt.Println("calculator: type an expression such as 6 * 7, or exit")
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "exit" {
			return
		}
		if line == "" {
			continue
		}
		out, err := evaluate(strings.Fields(line))
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(out)
	}
}
