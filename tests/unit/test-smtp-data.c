/* test-smtp-data: not written yet */
int main(void)
{
    return 77;
}
