"""Readers and the import pipeline for patients, charges, payments and provider events."""
