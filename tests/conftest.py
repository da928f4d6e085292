pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.sandbox",
    "tests.fixtures.stack",
    "tests.fixtures.api",
    "tests.fixtures.brokers",
]
