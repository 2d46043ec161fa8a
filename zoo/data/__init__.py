"""Generic data readers shared by several families (image sets); family data lives in zoo/families/<family>/data.py."""
