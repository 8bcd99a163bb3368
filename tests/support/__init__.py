"""Test support code: fixtures shared by several test modules (not collected by pytest)."""
