# Runs one portable test function under MicroPython: micropython -m mprun MODULE FUNCTION
import sys

module = __import__(sys.argv[1])
getattr(module, sys.argv[2])()
print("PASS")
