"""The permission matrix: every GraphQL, REST and DICOMweb operation, classified by hand.

Each ``ops_*.py`` module lists the operations of one area as :class:`spec.Operation`
entries; ``tests/test_permission_matrix.py`` checks that together they cover every operation
the app serves, and runs each one for every role and for another clinic.
"""
