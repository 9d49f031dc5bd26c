"""freepoint"""
