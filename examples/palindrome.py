def is_palindrome(s: str) -> bool:
    """Return True if s reads the same forwards and backwards."""
    


if __name__ == "__main__":
    print(is_palindrome("racecar"))
