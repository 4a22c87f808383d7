"""Tether benchmarks of the portable core (bench/README.md). Run all: python3 -m bench"""
