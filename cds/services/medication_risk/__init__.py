"""Medication risk at order-sign: knowledge base, medication resolution, rules, scoring and cards.

Data flow: knowledge.py (load + validate cds/knowledge/medications) -> resolve.py (orders to RxNorm
ingredients) -> patient.py (age, eGFR, labs, allergies) -> rules.py (findings) -> score.py -> cards.py.
The service wiring is service.py.
"""
